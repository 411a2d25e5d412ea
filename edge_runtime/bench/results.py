"""How a bench leaves its results: the JSON that `bench report` reads, and its Markdown table beside it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path


def write_results(bench: str, config, rows: list[dict], table: Callable[[list[dict]], str]) -> None:
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": bench, "config": asdict(config), "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(table(rows) + "\n")
