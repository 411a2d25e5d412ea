"""Exported graphs for the `ort` rows of the benchmarks: written once per (model, task, precision,
rank) into a cache folder and reused by later runs."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.errors import UserError
from edge_runtime.ort.manifest import GRAPH_FILE, Manifest
from edge_runtime.spec import AdapterSpec


def exported_graph(root: str | Path, model: str, task: str, precision: str, lora_r: int) -> Path:
    """The cached graph, exported again where it predates the perturbation axis or this manifest layout."""
    folder = Path(root) / f"{model}-{task}-{precision}-r{lora_r}"
    if not _current(folder):
        from edge_runtime.ort.export import export_graph

        export_graph(AdapterSpec(model, task, precision, lora_r=lora_r, lora_alpha=2 * lora_r), folder)
    return folder


def _current(folder: Path) -> bool:
    try:
        return Manifest.load(folder).perturbation_axis
    except UserError:  # none there, or written by an edgetune that laid its manifest out otherwise
        return False


def graph_bytes(folder: Path) -> int:
    return (folder / GRAPH_FILE).stat().st_size


def training_artifacts(graph: Path) -> Path:
    """onnxruntime-training's artifacts for backprop on `graph` (adapters start at zero: memory and
    time do not depend on their values)."""
    folder = graph.with_name(graph.name + "-artifacts")
    if not (folder / "checkpoint").exists():
        import numpy as np

        from edge_runtime.ort.backprop import build_artifacts
        from edge_runtime.ort.manifest import Manifest

        zeros = {t["name"]: np.zeros(t["shape"], dtype=np.float32) for t in Manifest.load(graph).trainable}
        build_artifacts(graph, folder, zeros)
    return folder


def backprop_trains(graph: Path) -> bool:
    from edge_runtime.ort.manifest import Manifest

    manifest = Manifest.load(graph)
    return manifest.kind == "encoder" and manifest.adapter.precision == "fp32"
