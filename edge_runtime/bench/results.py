"""How a bench leaves its results: the JSON that `bench report` reads, and its Markdown table beside it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from edge_runtime.config import config_values


def write_json(config, rows: list[dict], bench: str | None = None) -> None:
    """A bench's JSON at config.out (none: nowhere), its config keyed as in a config file."""
    if config.out:
        out = Path(config.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        named = {"bench": bench} if bench else {}
        out.write_text(json.dumps({**named, "config": config_values(config), "rows": rows}, indent=2))


def write_results(bench: str, config, rows: list[dict], table: Callable[[list[dict]], str]) -> None:
    write_json(config, rows, bench)
    if config.out:
        Path(config.out).with_suffix(".md").write_text(table(rows) + "\n")
