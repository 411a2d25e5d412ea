"""The settings of `edgetune bench comm` (comm.py runs them)."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.planners import PLANNERS, Planner
from edge_runtime.bench.options import Quick
from edge_runtime.config import defaults, require_at_least_one, setting
from edge_runtime.options import Batches, Devices, Estimator, LocalSteps, LoraRank, Model, Results, Threads


# The estimator's settings are those of the measured round's method: its queries also size the computed
# seed-and-scalar rows (one scalar per query).
@dataclass
@defaults(batch_size=8, max_length=64, devices=4, threads=1, out="bench-comm.json")
class CommBenchConfig(Results, Threads, Quick, Estimator, LocalSteps, Devices, LoraRank, Batches, Model):
    shape_models: tuple[str, ...] = setting(
        "models whose adapter shapes give computed rows", ("minilm", "smollm2-135m")
    )
    planners: tuple[Planner, ...] = setting("round planners to compare", tuple(PLANNERS))

    def validate(self) -> None:
        if self.quick:
            self.model, self.shape_models = "tiny-bert", ("tiny-bert", "minilm")
            self.local_steps, self.batch_size = 4, 4
        require_at_least_one(self, "devices", "local_steps", "batch_size", "lora_r", "max_length", "threads")
        self.estimator.validate()
