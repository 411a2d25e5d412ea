"""The training methods by name: each is a gradient estimator paired with an update rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge_runtime.errors import UserError
from edge_runtime.estimators.backprop import Backprop
from edge_runtime.estimators.base import EstimateThenUpdate, Method
from edge_runtime.estimators.conservative import Conservative
from edge_runtime.estimators.forward_grad import ForwardGrad
from edge_runtime.estimators.update_rules import SGD, Adam, Momentum
from edge_runtime.estimators.zo import Restore, TwoPointZO


@dataclass(frozen=True)
class EstimatorSettings:
    """The hyper-parameters methods read; the trainer fills it from the run's config."""

    mu: float = 1e-2
    queries: int = 1
    grad_clip: float | None = None
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    zo_restore: Restore = "snapshot"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    forward_only: bool
    default_lr: float
    summary: str
    build: Callable[[EstimatorSettings], Method]


def _zo(s: EstimatorSettings, sign: bool = False) -> TwoPointZO:
    return TwoPointZO(mu=s.mu, queries=s.queries, restore=s.zo_restore, sign=sign, clip=s.grad_clip)


def _adam(s: EstimatorSettings) -> Adam:
    return Adam(s.beta1, s.beta2, s.eps)


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("zo-sgd", True, 1e-3, "MeZO: two-point ZO + SGD",
                   lambda s: EstimateThenUpdate(_zo(s), SGD())),
        MethodInfo("zo-sgd-sign", True, 1e-4, "two-point ZO, SGD on sign(g) z",
                   lambda s: EstimateThenUpdate(_zo(s, sign=True), SGD())),
        MethodInfo("zo-sgd-mmt", True, 1e-4, "two-point ZO + heavy-ball momentum",
                   lambda s: EstimateThenUpdate(_zo(s), Momentum(s.momentum))),
        MethodInfo("zo-sgd-cons", True, 1e-3, "two-point ZO + SGD, step kept only if the loss does not rise",
                   lambda s: Conservative(_zo(s))),
        MethodInfo("zo-adam", True, 1e-3, "two-point ZO + Adam",
                   lambda s: EstimateThenUpdate(_zo(s), _adam(s))),
        MethodInfo("forward-grad", True, 1e-3, "forward-mode AD (jvp) directional derivative + SGD",
                   lambda s: EstimateThenUpdate(
                       ForwardGrad(queries=s.queries, fallback_mu=s.mu, clip=s.grad_clip), SGD())),
        MethodInfo("fo-sgd", False, 1e-2, "backprop + SGD (baseline)",
                   lambda s: EstimateThenUpdate(Backprop(clip=s.grad_clip), SGD())),
        MethodInfo("fo-adam", False, 1e-3, "backprop + Adam (baseline)",
                   lambda s: EstimateThenUpdate(Backprop(clip=s.grad_clip), _adam(s))),
    )
}


def get_method(name: str) -> MethodInfo:
    try:
        return METHODS[name]
    except KeyError:
        raise UserError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}") from None


def build_method(name: str, settings: EstimatorSettings) -> Method:
    return get_method(name).build(settings)
