"""Two-point zeroth-order gradient estimation (MeZO / ZO-Bench).

For each of q seeds: L+ = L(theta + mu z), L- = L(theta - mu z) on the same batch, and
g = (L+ - L-) / (2 mu). The estimate is mean_i g_i z_i, kept as (seed, g) pairs.

One perturbed copy per pass (the objective's `perturbations_per_pass` is 1) perturbs the
parameters in place, with z alive for one tensor at a time: the peak memory of inference. With k
per pass the 2q perturbed copies go through the model k at a time as one batched pass (MobiZO's
parallel queries): the base's weights are read once per k evaluations instead of once per
evaluation, at the cost of k copies of the trained tensors and k times a pass's activations. Both
give the same scalars to float rounding.
"""

from __future__ import annotations

import torch

from edge_runtime.estimators.base import GradientEstimator, SeedScalarEstimate, fewer_copies_per_pass, unbatchable
from edge_runtime.estimators.perturbation import Snapshot, query_seeds
from edge_runtime.estimators.subspaces import FullSpace, Subspace
from edge_runtime.heads.base import Batch
from edge_runtime.objective import Objective
from edge_runtime.seeded.scalars import check_finite, zo_scalar
from edge_runtime.spec import Restore

COPIES = "ZO perturbations"
Evaluation = tuple[int, float]  # (seed, sign): the point theta + sign * mu * z(seed)


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
        seeds = query_seeds(seed, self.queries)
        if objective.perturbations_per_pass > 1:
            pairs = self._batched(objective, batch, seeds)
        else:
            pairs = [self.directional_derivative(objective, batch, s) for s in seeds]
        losses, scalars = [], []
        for loss, g in pairs:
            check_finite(loss, [g])
            losses.append(loss)
            scalars.append(zo_scalar(g, clip=self.clip, sign=self.sign))
        return SeedScalarEstimate(sum(losses) / len(losses), 2 * self.queries, list(seeds), scalars, self.subspace)

    def _batched(self, objective: Objective, batch: Batch, seeds: list[int]) -> list[tuple[float, float]]:
        evaluations = [(seed, sign) for seed in seeds for sign in (1.0, -1.0)]
        values: list[float] = []
        while len(values) < len(evaluations):
            chunk = evaluations[len(values) : len(values) + objective.perturbations_per_pass]
            try:
                values += objective.losses_at(self._points(objective, chunk), batch).tolist()
            except torch.OutOfMemoryError:
                if len(chunk) == 1:
                    raise
                torch.cuda.empty_cache()
                fewer_copies_per_pass(objective, len(chunk) // 2, COPIES, "did not fit in the device's memory")
            except (RuntimeError, NotImplementedError) as error:
                # An op without a batching rule: the one-at-a-time pass gives the same scalars.
                fewer_copies_per_pass(objective, 1, COPIES, unbatchable(error))
                return [self.directional_derivative(objective, batch, s) for s in seeds]
        return [((plus + minus) / 2, (plus - minus) / (2 * self.mu)) for plus, minus in zip(values[0::2], values[1::2])]

    @torch.no_grad()
    def _points(self, objective: Objective, chunk: list[Evaluation]) -> dict[str, torch.Tensor]:
        """Each trained tensor at every point of the chunk, stacked; z alive for one tensor at a time."""
        points = {}
        for name, p in objective.params.items():
            stacked = p.detach().unsqueeze(0).repeat(len(chunk), *(1,) * p.dim())
            drawn: tuple[int, torch.Tensor | None] | None = None
            for row, (seed, sign) in zip(stacked, chunk):
                if drawn is None or drawn[0] != seed:
                    drawn = (seed, self.subspace.direction(seed, name, p))
                if drawn[1] is not None:
                    row.add_(drawn[1], alpha=sign * self.mu)
            points[name] = stacked
        return points
