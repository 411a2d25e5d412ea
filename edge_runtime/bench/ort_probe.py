"""One memory measurement of the ONNX Runtime backend in a fresh process that never imports torch
(what a device runs): `python -m edge_runtime.bench.ort_probe '<json>'`.

Peak = the highest resident memory during the steps minus the process's memory before the
session was created (Python, numpy, onnxruntime), as `memory_probe` measures the PyTorch rows.
"""

from __future__ import annotations

import importlib.abc
import json
import sys
from types import SimpleNamespace

from edge_runtime.memory import measure


class _NoTorch(importlib.abc.MetaPathFinder):
    """onnxruntime-training (the workstation's build) imports torch whenever it can, for its export
    helpers; a device's plain onnxruntime never does. Hiding torch measures what a device holds."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("the ONNX Runtime probe runs without torch, like a device")


sys.meta_path.insert(0, _NoTorch())
measure.pin_allocator()

from edge_runtime.bench.examples import long_examples  # noqa: E402
from edge_runtime.estimation import EstimatorSettings  # noqa: E402
from edge_runtime.ort.methods import build_method  # noqa: E402
from edge_runtime.ort.session import GraphObjective  # noqa: E402
from edge_runtime.random_directions import step_seed  # noqa: E402

INFERENCE = "inference"
CPU = SimpleNamespace(type="cpu")  # measure's device argument, without torch.device


def probe(row: dict) -> dict:
    measure.release_freed_memory()
    baseline = measure.rss_bytes()
    objective = GraphObjective(row["graph"], threads=row["threads"])
    _, examples = long_examples(row["task"], row["batch"])
    batch = objective.encoding.encode(examples, row["seq_len"])
    measure.release_freed_memory()
    measure.reset_peak(CPU)
    if row["method"] == INFERENCE:
        objective.loss(batch)
    else:
        method = build_method(row["method"], EstimatorSettings())
        for step in range(row["steps"]):
            method.step(objective, objective.params, batch, 1e-6, step_seed(0, step))
    return {"peak_bytes": measure.peak_bytes(CPU) - baseline, "seq_len": batch.length, "runtime_bytes": baseline}


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]))))
