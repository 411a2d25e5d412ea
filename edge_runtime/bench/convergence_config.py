"""The settings of `edgetune bench convergence` (convergence.py runs them): most are the `edgetune
train` settings every run of the grid shares."""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.bench.options import Adapters, Methods, Models, Quick, Repeats, Tasks
from edge_runtime.config import config_fields, defaults, require_at_least_one, setting
from edge_runtime.errors import UserError
from edge_runtime.options import (
    Batches,
    Device,
    Estimator,
    Evaluation,
    FewShot,
    HeadTraining,
    LrSchedule,
    Results,
    Seed,
    Threads,
)


# The `edgetune train` settings every run of the grid shares are train's own groups (the estimator's,
# the schedule, the few-shot split, the evaluation), so a name here means what it means there.
@dataclass
@defaults(tasks=("sst2", "copa"), threads=1, eval_examples=200, out="bench-convergence.json")
class ConvergenceBenchConfig(
    Results,
    Threads,
    Device,
    Repeats,
    Quick,
    Evaluation,
    LrSchedule,
    FewShot,
    Estimator,
    Seed,
    HeadTraining,
    Batches,
    Adapters,
    Methods,
    Tasks,
    Models,
):
    budget: int = setting("forward passes per run (the same query budget for every method)", 2000)
    lrs: tuple[str, ...] = setting(
        "learning rates as method=lr or adapter/method=lr (the latter wins; others use the method's default)", ()
    )
    variants: tuple[str, ...] = setting(
        "recipes to run every method with, each name:key=value;key=value over "
        "`edgetune train` settings (e.g. r2:lora_r=2;lora_alpha=4); empty = the "
        "settings above",
        (),
    )
    eval_points: int = setting("evaluations along each run (besides the one before training)", 5)
    memory: bool = setting("measure peak memory of each method and of inference, each in a fresh process", True)
    keep_runs: str | None = setting(
        "folder that keeps each run's own folder (its per-step metrics.jsonl, adapter and checkpoints), "
        "named by row; none = a temporary folder, deleted at the end",
        None,
    )

    def validate(self) -> None:
        if self.quick:
            self.models = ("tiny-bert",)
            self.budget, self.k_shot, self.eval_examples, self.eval_points = 24, 4, 16, 2
            self.batch_size, self.max_length, self.repeats = 4, 32, 1
        require_at_least_one(
            self, "budget", "batch_size", "max_length", "eval_points", "repeats", "threads", "eval_examples"
        )
        if self.k_shot is not None and self.k_shot < 0:
            raise UserError(f"k_shot must not be negative, got {self.k_shot}")
        self.estimator.validate()
        self.check_methods()
        self.check_tasks()
        self.learning_rates()
        self.recipes()

    def recipes(self) -> dict[str, dict[str, str]]:
        """{variant name: train settings it overrides}; one unnamed variant when none is given."""
        from edge_runtime.training.config import TrainConfig

        known = {f.name for f, _, _ in config_fields(TrainConfig)}
        recipes: dict[str, dict[str, str]] = {}
        for item in self.variants or ("",):
            name, _, settings = item.partition(":")
            pairs = [pair.partition("=") for pair in settings.split(";") if pair.strip()]
            if item and (not name.strip() or any(not sep for _, sep, _ in pairs)):
                raise UserError(f"variants: expected name:key=value;key=value, got {item!r}")
            unknown = [key.strip() for key, _, _ in pairs if key.strip() not in known]
            if unknown:
                raise UserError(f"variants: {', '.join(unknown)} are not `edgetune train` settings")
            recipes[name.strip()] = {key.strip(): value.strip() for key, _, value in pairs}
        return recipes

    def learning_rates(self) -> dict[str, float]:
        """{"method" or "adapter/method": lr}"""
        rates = {}
        for item in self.lrs:
            key, _, value = item.partition("=")
            key = key.strip()
            adapter, _, method = key.rpartition("/")
            from edge_runtime.estimators import get_method
            from edge_runtime.models.precision import check_precision

            get_method(method)
            if adapter:
                check_precision("fp32", adapter)
            try:
                rates[key] = float(value)
            except ValueError:
                raise UserError(f"lrs: expected method=lr or adapter/method=lr, got {item!r}") from None
        return rates

    def learning_rate(self, adapter: str, method: str) -> float | None:
        rates = self.learning_rates()
        return rates.get(f"{adapter}/{method}", rates.get(method))
