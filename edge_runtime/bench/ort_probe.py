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
from edge_runtime.ort.encoding import GraphEncoding  # noqa: E402
from edge_runtime.ort.manifest import Manifest  # noqa: E402
from edge_runtime.ort.methods import build_method  # noqa: E402
from edge_runtime.ort.session import GraphObjective  # noqa: E402
from edge_runtime.random_directions import step_seed  # noqa: E402

INFERENCE = "inference"
CPU = SimpleNamespace(type="cpu")  # measure's device argument, without torch.device


def probe(row: dict) -> dict:
    measure.release_freed_memory()
    baseline = measure.rss_bytes()
    _, examples = long_examples(row["task"], row["batch"])
    if row.get("artifacts"):
        # Training artifacts (built by the parent) replace the inference session: one copy of the base.
        from edge_runtime.ort.backprop import OrtBackprop

        manifest = Manifest.load(row["graph"])
        backprop = OrtBackprop(row["artifacts"], manifest, lr=1e-6)
        batch = GraphEncoding(row["graph"], manifest).encode(examples, row["seq_len"])
        step = lambda _: backprop.step(batch)  # noqa: E731
    else:
        objective = GraphObjective(row["graph"], threads=row["threads"])
        batch = objective.encoding.encode(examples, row["seq_len"])
        if row["method"] == INFERENCE:
            step = lambda _: objective.loss(batch)  # noqa: E731
        else:
            method = build_method(row["method"], EstimatorSettings())
            step = lambda i: method.step(objective, objective.params, batch, 1e-6, step_seed(0, i))  # noqa: E731
    measure.release_freed_memory()
    measure.reset_peak(CPU)
    for i in range(1 if row["method"] == INFERENCE else row["steps"]):
        step(i)
    return {"peak_bytes": measure.peak_bytes(CPU) - baseline, "seq_len": batch.length, "runtime_bytes": baseline}


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]))))
