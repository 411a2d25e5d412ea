"""The settings of `edgetune bench speed` (speed.py runs them). Every example is stretched to
exactly max_length tokens, so each row times the shape it names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_runtime.bench.options import Methods, Repeats, Runtimes
from edge_runtime.config import defaults, require_at_least_one, setting
from edge_runtime.errors import UserError
from edge_runtime.options import BasePrecision, Batches, Device, Model, Results, Task, Threads
from edge_runtime.ort.manifest import PRECISIONS as ORT_PRECISIONS


@dataclass
@defaults(model="smollm2-135m", batch_size=8, out="bench-speed.json")
class SpeedBenchConfig(Results, Threads, Device, Repeats, Runtimes, Methods, BasePrecision, Batches, Task, Model):
    queries: tuple[int, ...] = setting("directions per step (q) of the ZO and Forward-Grad rows, one row each", (1,))
    zo_passes: tuple[Literal["sequential", "batched"], ...] = setting(
        "how ZO rows run their 2q perturbed copies and Forward-Grad rows their q tangents: sequential (one per "
        "pass) and/or batched (all in one pass)",
        ("sequential",),
    )
    ort_precision: Literal[ORT_PRECISIONS] = setting("base precision of the ort rows' graph", "int8")

    def validate(self) -> None:
        require_at_least_one(self, "max_length", "batch_size", "repeats", "threads")
        if not self.queries or min(self.queries) < 1:
            raise UserError(f"queries must be at least 1, got {self.queries}")
        if not self.zo_passes:
            raise UserError("zo_passes must be sequential and/or batched, got none")
        self.check_methods()
        self.check_backends()
