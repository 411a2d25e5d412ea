"""Two-point zeroth-order gradient estimation (MeZO / ZO-Bench).

For each of q seeds: L+ = L(theta + mu z), L- = L(theta - mu z) on the same batch, and
g = (L+ - L-) / (2 mu). The estimate is mean_i g_i z_i, kept as (seed, g) pairs. Peak memory is
that of inference: parameters are perturbed in place and z exists for one tensor at a time.
"""

from __future__ import annotations

import torch

from edge_runtime.estimation import Restore, check_finite, zo_scalar
from edge_runtime.estimators.base import GradientEstimator, SeedScalarEstimate
from edge_runtime.estimators.directions import Snapshot, query_seeds
from edge_runtime.estimators.subspaces import FullSpace, Subspace
from edge_runtime.heads.base import Batch
from edge_runtime.objective import Objective


class TwoPointZO(GradientEstimator):
    def __init__(
        self,
        *,
        mu: float,
        queries: int,
        restore: Restore = "snapshot",
        sign: bool = False,
        clip: float | None = None,
        subspace: Subspace | None = None,
    ) -> None:
        self.mu, self.queries = mu, queries
        self.restore, self.sign, self.clip = restore, sign, clip
        self.subspace = subspace or FullSpace()
        self._snapshot: Snapshot | None = None

    def _snapshot_of(self, objective: Objective) -> Snapshot:
        if self._snapshot is None or self._snapshot.params is not objective.params:
            self._snapshot = Snapshot(objective.params)
        return self._snapshot

    @torch.no_grad()
    def directional_derivative(self, objective: Objective, batch: Batch, seed: int) -> tuple[float, float]:
        """(L(theta), (L+ - L-) / 2mu) along z(seed); parameters come back as they were."""
        params, mu, perturb_ = objective.params, self.mu, self.subspace.perturb_
        snapshot = self._snapshot_of(objective) if self.restore == "snapshot" else None
        if snapshot:
            snapshot.save()
        perturb_(params, seed, mu)
        loss_plus = objective.loss(batch).item()
        if snapshot:
            snapshot.load()
            perturb_(params, seed, -mu)
        else:
            perturb_(params, seed, -2 * mu)
        loss_minus = objective.loss(batch).item()
        if snapshot:
            snapshot.load()
        else:
            perturb_(params, seed, mu)
        return (loss_plus + loss_minus) / 2, (loss_plus - loss_minus) / (2 * mu)

    def estimate(self, objective: Objective, batch: Batch, seed: int) -> SeedScalarEstimate:
        self.subspace.begin_step(objective.params)
        seeds, scalars, losses = [], [], []
        for query_seed in query_seeds(seed, self.queries):
            loss, g = self.directional_derivative(objective, batch, query_seed)
            check_finite(loss, [g])
            seeds.append(query_seed)
            losses.append(loss)
            scalars.append(zo_scalar(g, clip=self.clip, sign=self.sign))
        return SeedScalarEstimate(sum(losses) / len(losses), 2 * self.queries, seeds, scalars, self.subspace)
