"""The zeroth-order methods on an ONNX Runtime graph: two-point estimates over numpy adapters,
paired with the numpy update rules, by the same names and settings as the PyTorch methods.

Each step perturbs the adapters in place with z regenerated from (seed, parameter name) by
`edge_runtime.seeded.draws`, so a device on ORT draws exactly the z a PyTorch device or a
coordinator replaying its (seed, scalar) upload draws. A snapshot of the adapters (a few MB)
restores them bit-exactly after each query, as the PyTorch default `--zo-restore snapshot` does.
With the objective's `perturbations_per_pass` above 1 (a graph with a perturbation axis), the
perturbed copies are built beside the adapters instead and scored together, as
`edge_runtime.estimators.zo` does on PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_runtime.errors import UserError
from edge_runtime.ort.encoding import ArrayBatch
from edge_runtime.ort.session import Adapters, GraphObjective
from edge_runtime.ort.update_rules import SGD, Adam, Gradients, Momentum
from edge_runtime.seeded.draws import normal, query_seeds
from edge_runtime.seeded.scalars import StepResult, check_finite, zo_scalar
from edge_runtime.spec import EstimatorSettings


def perturb(params: Adapters, seed: int, scale: float) -> None:
    """params += scale * z(seed), one parameter's z alive at a time."""
    for name, p in params.items():
        z = normal(seed, name, p.shape)
        z *= np.float32(scale)
        p += z


def gradients(params: Adapters, estimate: StepResult) -> Gradients:
    """mean_i scalars[i] * z(seeds[i]) for one parameter at a time, in its first direction's storage."""
    q = len(estimate.seeds)
    for name, p in params.items():
        grad = None
        for seed, scalar in zip(estimate.seeds, estimate.scalars):
            z = normal(seed, name, p.shape)
            z *= np.float32(scalar / q)
            grad = z if grad is None else np.add(grad, z, out=grad)
        yield name, p, grad


class Snapshot:
    def __init__(self, params: Adapters) -> None:
        self.params = params
        self.copies = {name: p.copy() for name, p in params.items()}

    def save(self) -> None:
        for name, p in self.params.items():
            np.copyto(self.copies[name], p)

    def load(self) -> None:
        for name, p in self.params.items():
            np.copyto(p, self.copies[name])


class TwoPointZO:
    def __init__(self, settings: EstimatorSettings, sign: bool = False) -> None:
        self.mu, self.queries, self.clip, self.sign = settings.mu, settings.queries, settings.grad_clip, sign

    def estimate(
        self, objective: GraphObjective, params: Adapters, batch: ArrayBatch, seed: int, snapshot: Snapshot
    ) -> StepResult:
        seeds = query_seeds(seed, self.queries)
        evaluations = [(query_seed, sign) for query_seed in seeds for sign in (1.0, -1.0)]
        if objective.perturbations_per_pass > 1:
            per_pass = objective.perturbations_per_pass
            values = [
                loss
                for start in range(0, len(evaluations), per_pass)
                for loss in objective.losses_at(
                    _points(objective, params, evaluations[start : start + per_pass], self.mu), batch
                )
            ]
        else:
            values = []
            snapshot.save()
            for query_seed, sign in evaluations:
                perturb(params, query_seed, sign * self.mu)
                values.append(objective.loss(batch))
                snapshot.load()
        scalars, losses = [], []
        for loss_plus, loss_minus in zip(values[0::2], values[1::2]):
            loss, g = (loss_plus + loss_minus) / 2, (loss_plus - loss_minus) / (2 * self.mu)
            check_finite(loss, [g])
            losses.append(loss)
            scalars.append(zo_scalar(g, clip=self.clip, sign=self.sign))
        return StepResult(sum(losses) / len(losses), 2 * self.queries, seeds, scalars)


def _points(objective: GraphObjective, params: Adapters, chunk: list[tuple[int, float]], mu: float) -> Adapters:
    """Every trainable tensor of the graph at each point of the chunk, stacked; only the task's
    `params` move, each row by `perturb` itself, so the points are those of one copy at a time."""
    points = {name: np.repeat(p[None], len(chunk), axis=0) for name, p in objective.params.items()}
    for i, (seed, sign) in enumerate(chunk):
        perturb({name: points[name][i] for name in params}, seed, sign * mu)
    return points


Rule = SGD | Momentum | Adam


@dataclass
class ZOMethod:
    """One step: estimate on `params` (the task's subset of the objective's adapters), update them.
    With `conservative`, ZO-SGD-Cons: the SGD step is kept only if it does not raise the batch
    loss, choosing among L(theta), L(theta - lr g), L(theta + lr g) as the PyTorch method does."""

    estimator: TwoPointZO
    rule: Rule
    conservative: bool = False
    _snapshot: Snapshot | None = None

    def step(self, objective: GraphObjective, params: Adapters, batch: ArrayBatch, lr: float, seed: int) -> StepResult:
        if self._snapshot is None or self._snapshot.params is not params:
            self._snapshot = Snapshot(params)
        estimate = self.estimator.estimate(objective, params, batch, seed, self._snapshot)
        if not self.conservative:
            self.rule.apply(gradients(params, estimate), lr)
            return estimate
        self._snapshot.save()
        candidates = {0.0: objective.loss(batch)}
        for signed_lr in (lr, -lr):
            self._snapshot.load()
            self.rule.apply(gradients(params, estimate), signed_lr)
            candidates[signed_lr] = objective.loss(batch)
        best = min(candidates, key=candidates.get)
        if best != -lr:  # theta + lr g was evaluated last, so only it is still in place
            self._snapshot.load()
        if best == lr:
            self.rule.apply(gradients(params, estimate), lr)
        estimate.forward_passes += 3
        return estimate


METHODS: dict[str, Callable[[EstimatorSettings], ZOMethod]] = {
    "zo-sgd": lambda s: ZOMethod(TwoPointZO(s), SGD()),
    "zo-sgd-sign": lambda s: ZOMethod(TwoPointZO(s, sign=True), SGD()),
    "zo-sgd-mmt": lambda s: ZOMethod(TwoPointZO(s), Momentum(s.momentum)),
    "zo-sgd-cons": lambda s: ZOMethod(TwoPointZO(s), SGD(), conservative=True),
    "zo-adam": lambda s: ZOMethod(TwoPointZO(s), Adam(s.beta1, s.beta2, s.eps)),
}


def build_method(name: str, settings: EstimatorSettings) -> ZOMethod:
    try:
        return METHODS[name](settings)
    except KeyError:
        raise UserError(
            f"the ONNX Runtime backend trains with {', '.join(METHODS)}; {name} needs the PyTorch "
            "backend (forward-grad needs jvp, fo-* needs backprop)"
        ) from None
