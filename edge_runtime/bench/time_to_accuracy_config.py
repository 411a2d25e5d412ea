"""The settings of `edgetune bench time-to-accuracy` (time_to_accuracy.py runs them). The task,
batch size and max length are those the convergence curves were measured with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_runtime.config import defaults, require_at_least_one, setting
from edge_runtime.errors import UserError
from edge_runtime.options import BasePrecision, Batches, Device, Model, Results, Task, Threads
from edge_runtime.units import parse_bytes


@dataclass
@defaults(out="bench-time-to-accuracy.json")
class TimeToAccuracyBenchConfig(Results, Threads, Device, BasePrecision, Batches, Task, Model):
    caps: tuple[str, ...] = setting("memory caps to plan under, e.g. 2GB,700MB; 'none' = no cap", ("none",))
    curves: str = setting(
        "bench convergence JSON whose curves give each method's steps to a gain",
        "docs/benchmarks/convergence/convergence-minilm-sst2.json",
    )
    gains: tuple[int, ...] = setting("accuracy gains over the curves' start, in points", (2, 5, 10))

    def validate(self) -> None:
        require_at_least_one(self, "batch_size", "max_length", "threads")
        for cap in self.caps:
            if cap != "none":
                parse_bytes(cap)
        if not self.gains or min(self.gains) <= 0:
            raise UserError(f"gains must be positive points, got {self.gains}")
        if not Path(self.curves).is_file():
            raise UserError(f"no convergence results at {self.curves}: write them with `edgetune bench convergence`")
