"""Exported graphs for the `ort` rows of the benchmarks: written once per (model, task, precision,
rank) into a cache folder and reused by later runs."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.ort.manifest import GRAPH_FILE, MANIFEST_FILE


def exported_graph(root: str | Path, model: str, task: str, precision: str, lora_r: int) -> Path:
    folder = Path(root) / f"{model}-{task}-{precision}-r{lora_r}"
    if not (folder / MANIFEST_FILE).exists():
        from edge_runtime.ort.export import export_graph

        export_graph(model, folder, task=task, precision=precision, lora_r=lora_r, lora_alpha=2 * lora_r)
    return folder


def graph_bytes(folder: Path) -> int:
    return (folder / GRAPH_FILE).stat().st_size
