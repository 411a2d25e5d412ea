"""The settings of `edgetune bench memory` (memory.py runs them). Every example is stretched to
exactly max_length tokens, so each row measures the shape it names."""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.bench.options import Adapters, Methods, Runtimes
from edge_runtime.config import defaults, require_at_least_one, setting
from edge_runtime.options import (
    Batches,
    Estimator,
    LoraRank,
    Model,
    NanGuard,
    PerturbationsPerPass,
    Results,
    Steps,
    Task,
    Threads,
)
from edge_runtime.spec import Precision


# Two steps per measurement: the optimizer's state exists during the second pass. One perturbed copy
# per pass unless asked (none: as `edgetune train` would batch them on this CPU).
@dataclass
@defaults(model="smollm2-135m", batch_size=8, steps=2, perturbations_per_pass=1, out="bench-memory.json")
class MemoryBenchConfig(
    Results,
    Threads,
    NanGuard,
    PerturbationsPerPass,
    Estimator,
    Steps,
    Adapters,
    Runtimes,
    Methods,
    LoraRank,
    Batches,
    Task,
    Model,
):
    precisions: tuple[Precision, ...] = setting("base precisions to measure", ("fp32", "int8"))
    project: tuple[str, ...] = setting(
        "architectures to project the table to with the memory model", ("llama-2-7b", "opt-13b")
    )
    project_precision: Precision = setting("base precision of the projected rows", "fp16")

    def validate(self) -> None:
        require_at_least_one(self, "max_length", "batch_size", "lora_r", "steps", "threads", "perturbations_per_pass")
        self.estimator.validate()
        self.check_methods()
        self.check_backends()
