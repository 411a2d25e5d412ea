"""The settings of `edgetune bench warm-start` (warm_start.py runs them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_runtime.bench.options import Models, Quick, Tasks
from edge_runtime.config import defaults, require_at_least_one, setting
from edge_runtime.errors import UserError
from edge_runtime.options import Batches, CalibrationExamples, Evaluation, Results, Seed, Threads


@dataclass
@defaults(
    models=("minilm", "smollm2-135m"), max_length=256, batch_size=32, eval_examples=None, out="bench-warm-start.json"
)
class WarmStartBenchConfig(Results, Threads, Quick, Evaluation, CalibrationExamples, Seed, Batches, Tasks, Models):
    labelled_examples: tuple[int, ...] = setting(
        "encoders: labelled training examples each head is solved from, one row each", (32, 128, 512, 2048)
    )
    poolings: tuple[Literal["own", "mean", "cls"], ...] = setting(
        "encoders: poolings to compare (own = what the model folder declares)", ("own", "cls")
    )

    def validate(self) -> None:
        if self.quick:
            self.models, self.labelled_examples, self.eval_examples = ("tiny-bert", "tiny-llama"), (16, 32), 32
            self.calibration_examples, self.max_length = 16, 64
        require_at_least_one(self, "calibration_examples", "max_length", "batch_size", "threads")
        if not self.labelled_examples or any(s < 4 for s in self.labelled_examples):
            raise UserError(
                f"labelled_examples must be at least 4 each (two per class per fold), got {self.labelled_examples}"
            )
        self.check_tasks()
