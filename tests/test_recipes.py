"""Measured recipes: what `edgetune train` starts from for a model, task and method the convergence
runs measured, beneath a config file and flags."""

import pytest

from edge_runtime.config import build_config
from edge_runtime.training.config import TrainConfig
from edge_runtime.training.recipes import RECIPES, configure, recipe_for

SMOLLM2 = {"model": "smollm2-135m", "task": "sst2", "method": "zo-sgd"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_every_recipe_is_a_valid_config_that_leaves_what_chooses_it_alone(recipe):
    assert not set(recipe.settings) & {"model", "task", "method", "recipe"}
    config, applied = configure({"model": recipe.model, "task": recipe.task, "method": recipe.method})
    assert applied is recipe
    for key, value in recipe.settings.items():
        assert getattr(config, key, getattr(config.estimator, key, None)) == value, key
    assert "docs/benchmarks/convergence/notes.md" in recipe.evidence


def test_a_recipe_lies_beneath_the_config_file_and_the_flags():
    recipe = recipe_for(**SMOLLM2)
    config, _ = configure(SMOLLM2, {"lr": 1e-3}, {"steps": 5})
    assert (config.lr, config.steps, config.lora_layers) == (1e-3, 5, recipe.settings["lora_layers"])


def test_no_recipe_or_an_unmeasured_combination_keeps_the_plain_defaults():
    plain = build_config(TrainConfig, SMOLLM2)
    assert configure(SMOLLM2, {"recipe": False}) == (build_config(TrainConfig, SMOLLM2, {"recipe": False}), None)
    for other in ({"method": "forward-grad"}, {"task": "rte"}, {"model": "tiny-llama"}, {"method": "auto"}):
        config, applied = configure({**SMOLLM2, **other})
        assert applied is None and config.lora_layers is plain.lora_layers is None
