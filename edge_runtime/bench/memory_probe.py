"""One memory measurement in a fresh process: `python -m edge_runtime.bench.memory_probe '<json>'`.

A fresh process per row because a process's high-water mark only ever rises, and because what
one configuration leaves behind (allocator caches, lazily built kernels) must not be billed to the
next. Peak = the highest resident memory during the steps minus the process's memory before the
model was loaded (runtime, torch and transformers): weights, adapters, state and activations,
which is what the memory model estimates. Loading transients are excluded (reset after loading).
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields

from edge_runtime.memory import measure

measure.pin_allocator()

import torch  # noqa: E402

from edge_runtime.bench.examples import long_examples  # noqa: E402
from edge_runtime.estimators import EstimatorSettings, build_method  # noqa: E402
from edge_runtime.estimators.perturbation import step_seed  # noqa: E402
from edge_runtime.heads import head_for  # noqa: E402
from edge_runtime.models import load_model  # noqa: E402
from edge_runtime.models.precision import load_dtype, prepare_model  # noqa: E402
from edge_runtime.objective import Objective  # noqa: E402
from edge_runtime.training.trainer import LastGood  # noqa: E402

INFERENCE = "inference"


def probe(row: dict) -> dict:
    torch.set_num_threads(row.get("threads", torch.get_num_threads()))
    measure.release_freed_memory()
    baseline = measure.rss_bytes()
    spec, examples = long_examples(row["task"], row["batch_size"])
    loaded = load_model(row["model"], num_labels=spec.num_labels, dtype=load_dtype(row["precision"]))
    module = prepare_model(loaded, adapter=row["adapter"], precision=row["precision"], r=row["lora_r"])
    objective = Objective(
        module,
        head_for(loaded.kind, loaded.tokenizer, spec.kind, row["max_length"]),
        perturbations_per_pass=row.get("perturbations_per_pass", 1),
    )
    batch = objective.encode(examples)
    seq_len = int(batch.inputs["input_ids"].shape[1])
    del loaded
    measure.release_freed_memory()
    measure.reset_peak(torch.device("cpu"))
    if row["method"] == INFERENCE:
        with torch.no_grad():
            objective.loss(batch)
    else:
        method = build_method(
            row["method"],
            EstimatorSettings(**{f.name: row[f.name] for f in fields(EstimatorSettings) if f.name in row}),
        )
        # The trainer's NaN guard: part of a real run's memory unless turned off.
        guard = LastGood(objective.params, row.get("nan_guard", True))
        for step in range(row["steps"]):
            guard.before()
            method.step(objective, batch, 1e-6, step_seed(0, step))
            guard.passed(step)
    return {
        "peak_bytes": measure.peak_bytes(torch.device("cpu")) - baseline,
        "seq_len": seq_len,
        "runtime_bytes": baseline,
    }


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]))))
