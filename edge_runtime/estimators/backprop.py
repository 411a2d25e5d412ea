"""Backpropagation: the first-order baseline every forward-only method is measured against."""

from __future__ import annotations

import torch

from edge_runtime.estimators.base import DenseEstimate, GradientEstimator, check_finite
from edge_runtime.heads.base import Batch
from edge_runtime.objective import Objective


class Backprop(GradientEstimator):
    def __init__(self, *, clip: float | None = None) -> None:
        self.clip = clip

    def estimate(self, objective: Objective, batch: Batch, seed: int) -> DenseEstimate:
        params = list(objective.params.values())
        for p in params:
            p.grad = None
        with torch.enable_grad():
            loss = objective.backward(batch)
        check_finite(loss)
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(params, self.clip)
        return DenseEstimate(loss, 1)
