"""Measure what a loaded, warmed-up model holds besides its tensors (the memory model's RUNTIME_BYTES).

    OMP_NUM_THREADS=1 python tools/runtime_overhead.py tiny-llama minilm smollm2-135m:int8

Each model is measured in a fresh process, the way `edgetune train --memory-cap` sees it: resident
memory after loading and the first evaluation passes, minus the memory before loading, minus the
weights and adapters the memory model counts.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from edge_runtime.memory import Workload, estimate, measure
from edge_runtime.training.config import TrainConfig
from edge_runtime.local.evaluation import evaluate
from edge_runtime.training.trainer import build_run

model, precision = sys.argv[1], sys.argv[2]
measure.pin_allocator()
run = build_run(TrainConfig(model=model, precision=precision, k_shot=8, eval_examples=64, batch_size=8,
                            progress=False, memory_cap="100GB"))
before = run.watchdog.cap - run.plan.available
for examples in (run.train, run.eval):
    evaluate(run.objective, examples, run.config.eval_batch_size, run.device)
measure.release_freed_memory()
held = measure.rss_bytes() - before
est = run.plan.estimate
print(json.dumps({"model": model, "precision": precision, "held_bytes": held,
                  "runtime_bytes": held - est.weights - est.adapters}))
"""


def main(models: list[str]) -> None:
    for spec in models:
        model, _, precision = spec.partition(":")
        done = subprocess.run(
            [sys.executable, "-c", PROBE, model, precision or "fp32"], capture_output=True, text=True, check=True
        )
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{row['model']:14s} {row['precision']:5s} held {row['held_bytes'] / 1e6:7.1f} MB, "
            f"runtime (not weights) {row['runtime_bytes'] / 1e6:5.1f} MB"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["tiny-llama", "tiny-bert", "minilm", "smollm2-135m", "smollm2-135m:int8"])
