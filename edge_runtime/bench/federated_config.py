"""The settings of `edgetune bench federated` (federated.py runs them) and the runs it compares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_runtime.bench.options import Quick
from edge_runtime.config import defaults, require_at_least_one, setting
from edge_runtime.errors import UserError
from edge_runtime.options import (
    Batches,
    DataDir,
    Devices,
    Evaluation,
    LocalSteps,
    Model,
    Profile,
    Results,
    Rounds,
    Seed,
    Task,
    Threads,
    TrainProbe,
    WarmStart,
)


@dataclass(frozen=True)
class FederatedRun:
    planner: str
    method: str
    lr: float
    # Forward-only runs keep the warm start's head (forward gradients on its steep logit scale
    # diverge; the adapter trains); backprop trains it too.
    train_head: bool


# Every run starts from the same federated warm start (round 0); learning rates measured on the
# default fleet of `edgetune fleet` (MiniLM, SST-2) after it. Spry at 1e-2 diverged after 14 of
# 20 rounds (docs/benchmarks/federated/spry-lr1e-2).
FEDERATED_RUNS = {
    "spry": FederatedRun("spry", "forward-grad", 3e-3, train_head=False),
    "fedmezo-seeds": FederatedRun("zo-seed", "zo-sgd", 1e-3, train_head=False),
    "fedavg-backprop": FederatedRun("fedavg-full", "fo-adam", 1e-3, train_head=True),
    # FwdLLM's setting: forward gradients, but every device perturbs the whole adapter (no slices).
    "fwdllm-unsliced": FederatedRun("fedavg-full", "forward-grad", 1e-3, train_head=False),
}


# The fleet's own batch shape and warm start (edge_runtime.fleet.config), so only the method differs from the main job.
@dataclass
# The devices are identical (one profile) and always on, so that only the method differs.
@dataclass
@defaults(
    batch_size=8,
    max_length=64,
    warm_start_examples=256,
    devices=10,
    profile="jetson-agx-orin-64gb",
    local_steps=5,
    eval_examples=200,
    train_probe_examples=128,
    threads=1,
    out="bench-federated.json",
)
class FederatedBenchConfig(
    Results,
    Threads,
    Quick,
    TrainProbe,
    Evaluation,
    LocalSteps,
    Rounds,
    Profile,
    Devices,
    Seed,
    WarmStart,
    Batches,
    DataDir,
    Task,
    Model,
):
    runs: tuple[Literal[tuple(FEDERATED_RUNS)], ...] = setting("runs to compare", tuple(FEDERATED_RUNS))
    targets: tuple[float, ...] = setting("accuracies whose first round each run reports", (0.6, 0.65))
    fleet_reports: str | None = setting("folder to keep every run's fleet report in; none = discard them", None)

    def validate(self) -> None:
        if self.quick:
            self.model, self.devices, self.rounds, self.local_steps = "tiny-bert", 3, 2, 2
            self.eval_examples, self.train_probe_examples, self.batch_size = 16, 16, 4
        if not self.runs:
            raise UserError(f"runs: choose some of {', '.join(FEDERATED_RUNS)}")
        require_at_least_one(
            self,
            "devices",
            "rounds",
            "local_steps",
            "batch_size",
            "max_length",
            "eval_examples",
            "train_probe_examples",
            "threads",
        )
        if any(not 0 < t <= 1 for t in self.targets):
            raise UserError(f"targets are accuracies in (0, 1], got {self.targets}")
