"""Measured recipes: the settings `edgetune train` starts from for a model, task and method that the
convergence runs (docs/benchmarks/convergence/notes.md) have measured, each beside what it reached.

A recipe sits between the config's defaults and what the user gives: a config file and flags
override any of its settings, and `--no-recipe` leaves the plain defaults. It is chosen by the
model alias, task and method as named, so a local model folder or `--method auto` gets none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_runtime.config import build_config
from edge_runtime.training.config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    model: str
    task: str
    method: str
    settings: Mapping[str, Any]
    evidence: str  # what it reached, on how many seeds, in what time, and where the curves are

    @property
    def name(self) -> str:
        return f"{self.model}/{self.task}/{self.method}"

    def describe(self) -> str:
        shown = " ".join(f"{key}={value}" for key, value in self.settings.items())
        return f"{self.name}: {shown}. {self.evidence}"


RECIPES = (
    Recipe(
        "smollm2-135m",
        "sst2",
        "zo-sgd",
        # LoRA in the top 12 of 30 layers: the bottom 18 run once per example and are kept, so a step
        # costs 1.0 s instead of 2.3 s on two CPU threads; |projected gradient| <= 1.5 and the wsd
        # cooldown keep a rate that high from drifting in the hour's second half.
        {
            "lora_layers": 12,
            "lr": 3e-3,
            "grad_clip": 1.5,
            "lr_schedule": "wsd",
            "steps": 2800,
            "k_shot": 1024,
            "batch_size": 16,
            "max_length": 64,
        },
        "SST-2 dev (872, +-0.013): 0.779 -> 0.818 and 0.812 after 2,800 steps (seeds 0 and 1: +3.9 and "
        "+3.3; the ridge head of the same 2,048 examples: 0.820 and 0.828), 37 min each alone on two CPU "
        "threads (59 min on a box 1.8x slower a step); at this rate a longer run drifts (4,400 steps: 0.828 "
        "at 2,200, 0.784 at the end); docs/benchmarks/convergence/notes.md, 'SmolLM2: the top layers only'",
    ),
    Recipe(
        "minilm",
        "sst2",
        "zo-sgd",
        # The ridge head of 2,048 forward passes is the start; training it with ZO's noise only costs
        # accuracy, and rank 1 is the smallest LoRA that still moves the encoder.
        {
            "warm_start": "ridge",
            "train_head": False,
            "lora_r": 1,
            "lora_alpha": 2,
            "lr": 3e-3,
            "steps": 1000,
            "k_shot": 0,
            "batch_size": 16,
            "max_length": 64,
        },
        "SST-2 dev (872): ridge head 0.781 -> 0.792 at step 1,000 (+1.1, within two standard errors; one "
        "seed, about 9 minutes of steps at 0.55 s on one CPU thread), declining after; "
        "docs/benchmarks/convergence/notes.md, 'An hour of ZO-SGD'",
    ),
)


def recipe_for(model: str, task: str, method: str | None) -> Recipe | None:
    return next((r for r in RECIPES if (r.model, r.task, r.method) == (model, task, method)), None)


def configure(*sources: dict[str, Any]) -> tuple[TrainConfig, Recipe | None]:
    """The run's config from its sources (a config file's values, then the flags'), with the measured
    recipe of its model, task and method beneath them where there is one and `recipe` is on."""
    config = build_config(TrainConfig, *sources)
    recipe = recipe_for(config.model, config.task, config.method) if config.recipe else None
    if recipe is None:
        return config, None
    return build_config(TrainConfig, dict(recipe.settings), *sources), recipe
