"""Merge a round: per-slice weighted averages of the updates, then a server optimizer.

Like Flower's Strategy split, with two small plug-ins: `average_updates` is fixed (a tensor's new
update is the example-weighted mean over the devices that trained it; a tensor nobody trained
keeps its value and its optimizer state), and a `ServerOptimizer` turns that mean into a step
(FedAvg, FedAdam, FedYogi as in Reddi et al., "Adaptive Federated Optimization", 2021).
Updates are summed in device-id order in float64, so a merge is the same whatever order the
updates arrived in, in one process or across many.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_runtime.errors import UserError


@dataclass(frozen=True)
class WeightedUpdate:
    """One device's update as the average takes it: deltas by tensor name, weighted by the examples it trained on."""

    device_id: str
    weight: float  # examples the device trained on
    deltas: dict[str, np.ndarray]


def average_updates(updates: Sequence[WeightedUpdate]) -> dict[str, np.ndarray]:
    """Each tensor's example-weighted mean delta over the updates that hold it: summed in device-id order in
    float64, returned as float32. A tensor no update holds is absent, so the server step leaves it alone."""
    sums: dict[str, np.ndarray] = {}
    weights: dict[str, float] = {}
    for update in sorted(updates, key=lambda u: u.device_id):
        for name, delta in update.deltas.items():
            sums[name] = sums.get(name, 0.0) + update.weight * delta.astype(np.float64)
            weights[name] = weights.get(name, 0.0) + update.weight
    return {name: (total / weights[name]).astype(np.float32) for name, total in sums.items() if weights[name] > 0}


class ServerOptimizer(ABC):
    """Applies the averaged update to the global state, in place; state is plain arrays. `self.state` is
    checkpointed with the adapter (recovery hands it back), so a subclass updates it key by key and never
    rebinds it.

    Example, FedAvg with each coordinate's step bounded by 0.1:

        >>> class ClippedFedAvg(ServerOptimizer):
        ...     def step(self, params, mean_update):
        ...         for name, delta in mean_update.items():
        ...             params[name] = params[name] + self.lr * np.clip(delta, -0.1, 0.1)
        >>> params = {"w": np.zeros(2, np.float32)}
        >>> ClippedFedAvg(lr=1.0).step(params, {"w": np.array([0.5, -0.05], np.float32)}); params["w"]
        array([ 0.1 , -0.05], dtype=float32)
    """

    def __init__(self, lr: float) -> None:
        self.lr = lr
        self.state: dict[str, np.ndarray] = {}

    @abstractmethod
    def step(self, params: dict[str, np.ndarray], mean_update: dict[str, np.ndarray]) -> None:
        """Move each tensor of `mean_update` (the averaged deltas by name), writing its new array into
        `params`; tensors the mean lacks keep their values and their state."""


class FedAvg(ServerOptimizer):
    """params += lr * mean update: McMahan et al.'s FedAvg at server learning rate 1. No state."""

    def step(self, params, mean_update):
        """params[name] + lr * delta for each averaged tensor, as a new array in `params`."""
        for name, delta in mean_update.items():
            params[name] = params[name] + self.lr * delta


class _Adaptive(ServerOptimizer):
    """The pseudo-gradient is minus the averaged update; moments per tensor."""

    def __init__(self, lr: float, beta1: float, beta2: float, tau: float) -> None:
        super().__init__(lr)
        self.beta1, self.beta2, self.tau = beta1, beta2, tau

    @abstractmethod
    def second_moment(self, v: np.ndarray, grad_sq: np.ndarray) -> np.ndarray: ...

    def step(self, params, mean_update):
        for name, delta in mean_update.items():
            grad = -delta
            m = self.state.get(f"m.{name}", np.zeros_like(grad))
            # Reddi et al. start v at tau^2, so the first steps are not divided by ~0.
            v = self.state.get(f"v.{name}", np.full_like(grad, self.tau**2))
            m = self.beta1 * m + (1 - self.beta1) * grad
            v = self.second_moment(v, grad * grad)
            self.state[f"m.{name}"], self.state[f"v.{name}"] = m.astype(np.float32), v.astype(np.float32)
            params[name] = (params[name] - self.lr * m / (np.sqrt(v) + self.tau)).astype(np.float32)


class FedAdam(_Adaptive):
    """Reddi et al.'s FedAdam: the second moment is Adam's exponential average of g^2."""

    def second_moment(self, v, grad_sq):
        """beta2 v + (1 - beta2) g^2."""
        return self.beta2 * v + (1 - self.beta2) * grad_sq


class FedYogi(_Adaptive):
    """Reddi et al.'s FedYogi: the second moment moves towards g^2 by (1 - beta2) g^2 a round, where
    FedAdam's moves by (1 - beta2) |v - g^2|: a run of small updates shrinks it, and so raises the step,
    more gently."""

    def second_moment(self, v, grad_sq):
        """v - (1 - beta2) g^2 sign(v - g^2)."""
        return v - (1 - self.beta2) * grad_sq * np.sign(v - grad_sq)


def server_optimizer(name: str, lr: float, beta1: float, beta2: float, tau: float) -> ServerOptimizer:
    """The server optimizer by its config name; beta1, beta2 and tau matter to fedadam and fedyogi only."""
    if name == "fedavg":
        return FedAvg(lr)
    if name == "fedadam":
        return FedAdam(lr, beta1, beta2, tau)
    if name == "fedyogi":
        return FedYogi(lr, beta1, beta2, tau)
    raise UserError(f"unknown server optimizer {name!r}; choose fedavg, fedadam or fedyogi")
