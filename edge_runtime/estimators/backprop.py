"""Backpropagation: the first-order baseline every forward-only method is measured against."""

from __future__ import annotations

import torch

from edge_runtime.estimators.base import DenseEstimate, GradientEstimator, check_finite
from edge_runtime.heads.base import Batch
from edge_runtime.models.checkpointing import recomputed_blocks
from edge_runtime.objective import Objective


class Backprop(GradientEstimator):
    """``recompute``: keep only each transformer block's input and recompute its activations in the
    backward pass (activation checkpointing): the same gradient at a fraction of the memory."""

    def __init__(self, *, clip: float | None = None, recompute: bool = False) -> None:
        self.clip = clip
        self.recompute = recompute

    def estimate(self, objective: Objective, batch: Batch, seed: int) -> DenseEstimate:
        params = list(objective.params.values())
        for p in params:
            p.grad = None
        with torch.enable_grad(), recomputed_blocks(objective.module, enabled=self.recompute):
            loss = objective.backward(batch)
        check_finite(loss)
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(params, self.clip)
        return DenseEstimate(loss, 1)
