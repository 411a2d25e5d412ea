"""The settings of `edgetune bench memory` (memory.py runs them). Every example is stretched to
exactly max_length tokens, so each row measures the shape it names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_runtime.bench.options import Methods, Runtimes
from edge_runtime.config import defaults, require_at_least_one, setting
from edge_runtime.options import Batches, LoraRank, Model, Results, Task, Threads
from edge_runtime.spec import AdapterKind, Precision


@dataclass
@defaults(model="smollm2-135m", batch_size=8, out="bench-memory.json")
class MemoryBenchConfig(Results, Threads, Runtimes, Methods, LoraRank, Batches, Task, Model):
    precisions: tuple[Precision, ...] = setting("base precisions to measure", ("fp32", "int8"))
    adapters: tuple[AdapterKind, ...] = setting("lora and/or full (full fine-tuning, fp32, where it fits in RAM)",
                                            ("lora",))
    steps: int = setting("steps per measurement (2: optimizer state exists during the second pass)", 2)
    zo_restore: Literal["snapshot", "inplace"] = setting(
        "ZO restore: snapshot (bit-exact, one copy) or inplace (MeZO, no copy)", "snapshot")
    queries: int = setting("directions per step (q) of the ZO rows", 1)
    perturbations_per_pass: int = setting("two-point ZO's perturbed copies per batched pass (1: one at a time)", 1)
    nan_guard: bool = setting("keep the trainer's NaN guard (two copies of the trainable tensors)", True)
    project: tuple[str, ...] = setting("architectures to project the table to with the memory model",
                                       ("llama-2-7b", "opt-13b"))
    project_precision: Precision = setting("base precision of the projected rows", "fp16")

    def validate(self) -> None:
        require_at_least_one(self, "max_length", "batch_size", "lora_r", "steps", "threads", "queries",
                             "perturbations_per_pass")
        self.check_methods()
        self.check_backends()
