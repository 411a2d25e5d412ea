"""One memory measurement of the ONNX Runtime backend in a fresh process:
`python -m edge_runtime.bench.ort_probe '<json>'`. Inference and ZO rows run without torch, as a
device does; backprop rows need onnxruntime.training, whose Python package imports torch.

Peak = the highest resident memory during the steps minus the process's memory before the
session was created (Python, numpy, the runtime), as `memory_probe` measures the PyTorch rows.
The runtime is chosen (and torch hidden) before anything imports onnxruntime, so the backend's
modules are imported inside `probe`.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

from edge_runtime.memory import measure

measure.pin_allocator()

INFERENCE = "inference"
CPU = SimpleNamespace(type="cpu")  # measure's device argument, without torch.device


def probe(row: dict) -> dict:
    from edge_runtime.bench.examples import long_examples
    from edge_runtime.ort.encoding import GraphEncoding
    from edge_runtime.ort.manifest import Manifest
    from edge_runtime.ort.methods import build_method
    from edge_runtime.ort.session import GraphObjective
    from edge_runtime.seeded.draws import step_seed
    from edge_runtime.spec import EstimatorSettings

    measure.release_freed_memory()
    baseline = measure.rss_bytes()
    _, examples = long_examples(row["task"], row["batch_size"])
    if row.get("artifacts"):
        # Training artifacts (built by the parent) replace the inference session: one copy of the base.
        from edge_runtime.ort.backprop import OrtBackprop

        manifest = Manifest.load(row["graph"])
        backprop = OrtBackprop(row["artifacts"], manifest, lr=1e-6)
        batch = GraphEncoding(row["graph"], manifest).encode(examples, row["max_length"])
        step = lambda _: backprop.step(batch)  # noqa: E731
    else:
        objective = GraphObjective(row["graph"], threads=row["threads"])
        batch = objective.encoding.encode(examples, row["max_length"])
        if row["method"] == INFERENCE:
            step = lambda _: objective.loss(batch)  # noqa: E731
        else:
            method = build_method(row["method"], EstimatorSettings())
            step = lambda i: method.step(objective, objective.params, batch, 1e-6, step_seed(0, i))  # noqa: E731
    measure.release_freed_memory()
    measure.reset_peak(CPU)
    for i in range(1 if row["method"] == INFERENCE else row["steps"]):
        step(i)
    return {
        "peak_bytes": measure.peak_bytes(CPU) - baseline,
        "seq_len": batch.length,
        "runtime_bytes": baseline,
        "torch_loaded": sys.modules.get("torch") is not None,
    }


def prepare_runtime(row: dict) -> None:
    """Load the runtime before the baseline, so the peak counts the model and its step only."""
    if row.get("artifacts"):
        # onnxruntime.training's Python package imports torch unconditionally (its optimizers and
        # amp); that is part of ORT backprop's runtime in Python, like torch for the torch rows.
        import onnxruntime.training.api  # noqa: F401
    else:
        # The inference path runs as on a device: onnxruntime-training (the workstation's build)
        # imports torch whenever it can, a device's plain onnxruntime never does. None in
        # sys.modules makes torch look uninstalled (`import torch` fails, find_spec answers None).
        sys.modules["torch"] = None
        import onnxruntime  # noqa: F401


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    prepare_runtime(request)
    print(json.dumps(probe(request)))
