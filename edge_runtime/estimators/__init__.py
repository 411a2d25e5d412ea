"""Gradient estimators and update rules; `build_method(name, settings)` pairs them by name."""

from edge_runtime.estimators.base import (
    Estimate,
    GradientEstimator,
    Method,
    NonFiniteLoss,
    StepResult,
    UpdateRule,
)
from edge_runtime.estimators.registry import (
    METHODS,
    EstimatorSettings,
    MethodInfo,
    build_method,
    copies_per_pass,
    get_method,
)

__all__ = [
    "Estimate",
    "GradientEstimator",
    "Method",
    "NonFiniteLoss",
    "StepResult",
    "UpdateRule",
    "METHODS",
    "EstimatorSettings",
    "MethodInfo",
    "build_method",
    "copies_per_pass",
    "get_method",
]
