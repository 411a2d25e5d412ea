"""The settings of `edgetune bench comm` (comm.py runs them)."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.planners import PLANNERS, Planner
from edge_runtime.bench.options import Quick
from edge_runtime.config import defaults, require_at_least_one, setting
from edge_runtime.options import Batches, LoraRank, Model, Results, Threads


@dataclass
@defaults(batch_size=8, max_length=64, threads=1, out="bench-comm.json")
class CommBenchConfig(Results, Threads, Quick, LoraRank, Batches, Model):
    shape_models: tuple[str, ...] = setting("models whose adapter shapes give computed rows",
                                            ("minilm", "smollm2-135m"))
    planners: tuple[Planner, ...] = setting("round planners to compare", tuple(PLANNERS))
    devices: int = setting("devices in the federation", 4)
    local_steps: int = setting("steps a device takes per round", 20)
    queries: int = setting("directions per step (seed-and-scalar uploads one scalar per query)", 1)

    def validate(self) -> None:
        if self.quick:
            self.model, self.shape_models = "tiny-bert", ("tiny-bert", "minilm")
            self.local_steps, self.batch_size = 4, 4
        require_at_least_one(self, "devices", "local_steps", "queries", "batch_size", "lora_r", "max_length",
                             "threads")
