"""ZO-SGD-Cons (ZO-Bench): take the SGD step only if it does not raise the loss on this batch.

After the estimate, evaluate L(theta), L(theta - lr g) and L(theta + lr g) and keep the lowest:
five forward passes a step for one query. Moves are undone from a snapshot, never by an
opposite optimizer call, so rejected candidates leave no rounding residue.
"""

from __future__ import annotations

import torch

from edge_runtime.estimators.base import Estimate, Method, StepResult, result_of
from edge_runtime.estimators.perturbation import Snapshot
from edge_runtime.estimators.update_rules import SGD
from edge_runtime.estimators.zo import TwoPointZO
from edge_runtime.heads.base import Batch
from edge_runtime.objective import Objective


class Conservative(Method):
    def __init__(self, estimator: TwoPointZO) -> None:
        self.estimator = estimator
        self.sgd = SGD()
        self._snapshot: Snapshot | None = None

    def _move(self, objective: Objective, estimate: Estimate, lr: float) -> None:
        self._snapshot.load()
        self.sgd.apply(objective.params, estimate, lr)

    @torch.no_grad()
    def step(self, objective: Objective, batch: Batch, lr: float, seed: int) -> StepResult:
        if self._snapshot is None or self._snapshot.params is not objective.params:
            self._snapshot = Snapshot(objective.params)
        estimate = self.estimator.estimate(objective, batch, seed)
        self._snapshot.save()
        candidates = {0.0: objective.loss(batch).item()}
        for signed_lr in (lr, -lr):
            self._move(objective, estimate, signed_lr)
            candidates[signed_lr] = objective.loss(batch).item()
        best = min(candidates, key=candidates.get)
        if best == 0.0:
            self._snapshot.load()
        elif best == lr:  # theta - lr g was evaluated first, so it is no longer in place
            self._move(objective, estimate, lr)
        result = result_of(estimate)
        result.forward_passes += 3
        return result
