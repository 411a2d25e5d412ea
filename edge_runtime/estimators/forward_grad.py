"""Forward-gradient estimation with forward-mode AD (Baydin et al.; Spry).

One jvp through `functional_call` gives L(theta) and the exact directional derivative
d = grad L . v for a tangent v ~ N(0, I); the estimate is d v, kept as (seed, d) like ZO's. When
the model has an op without forward-mode AD (SDPA attention on CPU, for one), the estimator says
so once and falls back to the two-point finite difference along the same kind of direction.
"""

from __future__ import annotations

import warnings

import torch

from edge_runtime.estimators.base import (
    GradientEstimator,
    SeedScalarEstimate,
    check_finite,
    clip_scalar,
    fewer_copies_per_pass,
    unbatchable,
)
from edge_runtime.estimators.perturbation import direction, query_seeds
from edge_runtime.estimators.zo import TwoPointZO
from edge_runtime.heads.base import Batch
from edge_runtime.objective import Objective

# Messages torch raises when an op lacks a forward-mode derivative formula.
_NO_FORWARD_AD = ("forward ad", "forward-mode", "forward mode", "jvp", "derivative for", "not implemented")


def lacks_forward_ad(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, (RuntimeError, NotImplementedError)) and any(s in text for s in _NO_FORWARD_AD)


class ForwardGrad(GradientEstimator):
    def __init__(self, *, queries: int, fallback_mu: float, clip: float | None = None) -> None:
        self.queries, self.clip = queries, clip
        self.fallback_mu = fallback_mu
        self.fallback: TwoPointZO | None = None

    def directional_derivative(self, objective: Objective, batch: Batch, seed: int) -> tuple[float, float]:
        primals = {name: p.detach() for name, p in objective.params.items()}
        tangents = {name: direction(seed, name, p) for name, p in primals.items()}
        loss, derivative = objective.jvp(batch, primals, tangents)
        return loss.item(), derivative.item()

    def estimate(self, objective: Objective, batch: Batch, seed: int) -> SeedScalarEstimate:
        if self.fallback is not None:
            return self.fallback.estimate(objective, batch, seed)
        seeds = query_seeds(seed, self.queries)
        try:
            pairs = (
                self._batched(objective, batch, seeds)
                if objective.perturbations_per_pass > 1 and self.queries > 1
                else [self.directional_derivative(objective, batch, s) for s in seeds]
            )
        except (RuntimeError, NotImplementedError) as error:
            if not lacks_forward_ad(error):
                raise
            warnings.warn(
                f"forward-mode AD is not supported by this model ({str(error).splitlines()[0]}); "
                f"Forward-Grad falls back to two-point finite differences with mu={self.fallback_mu}. "
                "Load the model with attn_implementation='eager' for true forward gradients.",
                RuntimeWarning,
                stacklevel=2,
            )
            self.fallback = TwoPointZO(mu=self.fallback_mu, queries=self.queries, clip=self.clip)
            return self.fallback.estimate(objective, batch, seed)
        losses, scalars = [], []
        for loss, d in pairs:
            check_finite(loss, [d])
            scalars.append(clip_scalar(d, self.clip))
            losses.append(loss)
        return SeedScalarEstimate(sum(losses) / len(losses), self.queries, list(seeds), scalars)

    def _batched(self, objective: Objective, batch: Batch, seeds: list[int]) -> list[tuple[float, float]]:
        """The q tangents `perturbations_per_pass` at a time through one vmapped jvp each."""
        primals = {name: p.detach() for name, p in objective.params.items()}
        pairs: list[tuple[float, float]] = []
        for start in range(0, len(seeds), objective.perturbations_per_pass):
            chunk = seeds[start : start + objective.perturbations_per_pass]
            tangents = {name: torch.stack([direction(s, name, p) for s in chunk]) for name, p in primals.items()}
            try:
                losses, derivatives = objective.jvps_at(batch, primals, tangents)
            except (RuntimeError, NotImplementedError) as error:
                if lacks_forward_ad(error):
                    raise
                # An op without a batching rule: the tangents one at a time give the same derivatives.
                fewer_copies_per_pass(objective, 1, "Forward-Grad tangents", unbatchable(error))
                return pairs + [self.directional_derivative(objective, batch, s) for s in seeds[start:]]
            pairs += list(zip(losses.tolist(), derivatives.tolist()))
        return pairs
