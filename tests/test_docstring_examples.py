"""The examples in the plug-in interfaces' docstrings run as written, so they cannot go stale."""

import doctest
import importlib

import pytest

MODULES = [
    "edge_runtime.estimators.base",
    "edge_runtime.memory.planner",
    "coordinator.planners.base",
    "coordinator.aggregation",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert tried > 0, f"{name} has no examples left: drop it from this list"
    assert failures == 0
