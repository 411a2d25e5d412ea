"""The two small interfaces every training method is built from.

A `GradientEstimator` looks at loss(theta; batch) and returns an `Estimate` of the gradient; an
`UpdateRule` (SGD, momentum, Adam) turns an estimate into a parameter update. A `Method` is what
the trainer calls once per step; most methods are just one estimator paired with one rule
(ZO-SGD = two-point ZO + SGD, ZO-Adam = two-point ZO + Adam, FO-Adam = backprop + Adam).

Estimates are consumed one parameter at a time, so a zeroth-order estimate is never
materialised for all parameters at once: it stays a list of (seed, scalar) pairs until each
parameter's z is regenerated at update time.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch

from edge_runtime.estimators.subspaces import FullSpace, Subspace
from edge_runtime.heads.base import Batch
from edge_runtime.objective import Objective

# Defined torch-free for the ONNX Runtime backend; re-exported here for the torch estimators.
from edge_runtime.seeded.scalars import NonFiniteLoss, StepResult, check_finite, clip_scalar  # noqa: F401

Params = Mapping[str, torch.nn.Parameter]


@dataclass
class Estimate(ABC):
    """A gradient estimate as an update rule takes it: the loss at the parameters it was taken at (two-point
    ZO: the mean of L(theta + mu z) and L(theta - mu z)), the passes it cost, and the gradient itself,
    yielded one parameter at a time by `gradients`."""

    loss: float
    forward_passes: int

    @abstractmethod
    def gradients(self, params: Params) -> Iterator[tuple[str, torch.nn.Parameter, torch.Tensor]]:
        """Yield (name, parameter, gradient estimate) one parameter at a time."""


@dataclass
class SeedScalarEstimate(Estimate):
    """g = mean_i scalars[i] * z(seeds[i]): ZO and Forward-Grad both estimate in this form, which
    is also what a device uploads in seed-and-scalar federated mode."""

    seeds: list[int] = field(default_factory=list)
    scalars: list[float] = field(default_factory=list)
    # The coordinates the directions were restricted to (block-wise and sparse ZO).
    subspace: Subspace = field(default_factory=FullSpace)

    def gradients(self, params: Params):
        """(name, parameter, mean_i scalars[i] * z_i), each z regenerated from its seed; a parameter no
        query touched is skipped."""
        for name, p in params.items():
            # Built in the first direction's own storage: one parameter-sized tensor alive for one
            # query (the memory model counts on it), not a zero buffer plus a direction.
            grad = None
            for seed, scalar in zip(self.seeds, self.scalars):
                z = self.subspace.direction(seed, name, p)
                if z is None:
                    continue
                weight = scalar / len(self.seeds)
                grad = z.mul_(weight) if grad is None else grad.add_(z, alpha=weight)
            # A parameter no query touched is skipped, not given a zero gradient: its momentum or
            # Adam moments then wait for its next estimate instead of decaying towards nothing.
            if grad is not None:
                yield name, p, grad


@dataclass
class DenseEstimate(Estimate):
    """Backprop's gradient, held in each parameter's .grad."""

    def gradients(self, params: Params):
        """(name, parameter, its .grad), zeros where backprop left a parameter without one."""
        for name, p in params.items():
            yield name, p, p.grad if p.grad is not None else torch.zeros_like(p)


class GradientEstimator(ABC):
    """Looks at loss(theta; batch) through an `Objective` and returns an `Estimate` of its gradient. The
    parameters are as they were when it returns (two-point ZO perturbs them in place and restores them):
    moving them is the update rule's part.

    Example, plain backprop as an estimator (`Backprop` adds clipping and recomputation); pair it with a rule
    as `EstimateThenUpdate(Autograd(), SGD())`:

        >>> class Autograd(GradientEstimator):
        ...     def estimate(self, objective, batch, seed):
        ...         objective.module.zero_grad()
        ...         with torch.enable_grad():
        ...             return DenseEstimate(objective.backward(batch), forward_passes=1)
    """

    @abstractmethod
    def estimate(self, objective: Objective, batch: Batch, seed: int) -> Estimate:
        """`seed` names this step's random directions; methods without randomness ignore it."""


class UpdateRule(ABC):
    """Turns an `Estimate` into a step of the parameters, in place, taking the estimate one parameter at
    a time so that only one parameter's gradient is alive. A rule with state (momentum, Adam's moments)
    keeps it per parameter name and hands it to checkpoints through state_dict.

    Example, SGD on the sign of the estimate (every coordinate moves by lr):

        >>> class SignSGD(UpdateRule):
        ...     @torch.no_grad()
        ...     def apply(self, params, estimate, lr):
        ...         for _, p, grad in estimate.gradients(params):
        ...             p.add_(grad.sign(), alpha=-lr)
    """

    @abstractmethod
    def apply(self, params: Params, estimate: Estimate, lr: float) -> None:
        """Move `params` by `estimate` at learning rate `lr`, in place."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The rule's state as named tensors, for a checkpoint; none for a stateless rule."""
        return {}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Rules with state (momentum, Adam) override this."""


class Method(ABC):
    """What the trainer calls once per step: estimate, update, report."""

    @abstractmethod
    def step(self, objective: Objective, batch: Batch, lr: float, seed: int) -> StepResult:
        """One step on `batch`: move `objective.params` in place and report the loss, the passes run and,
        for a seed-replayable method, the seeds and scalars. `seed` names the step's random directions."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The method's state between steps as named tensors, for a checkpoint; none by default."""
        return {}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Methods with state override this."""


class EstimateThenUpdate(Method):
    """Most methods: one estimator's estimate, applied by one update rule. Its state is the rule's."""

    def __init__(self, estimator: GradientEstimator, rule: UpdateRule) -> None:
        self.estimator = estimator
        self.rule = rule

    def step(self, objective: Objective, batch: Batch, lr: float, seed: int) -> StepResult:
        """Estimate, let the rule move the parameters, report what the estimate cost."""
        estimate = self.estimator.estimate(objective, batch, seed)
        self.rule.apply(objective.params, estimate, lr)
        return result_of(estimate)

    def state_dict(self):
        """The rule's state."""
        return self.rule.state_dict()

    def load_state_dict(self, state):
        """Restore the rule's state."""
        self.rule.load_state_dict(state)


def fewer_copies_per_pass(objective: Objective, per_pass: int, copies: str, why: str) -> None:
    """Lower the objective's copies per pass for the rest of the run, saying so in one line."""
    warnings.warn(
        f"{copies} per pass {objective.perturbations_per_pass} -> {per_pass}: {why}", RuntimeWarning, stacklevel=4
    )
    objective.perturbations_per_pass = per_pass


def unbatchable(error: BaseException) -> str:
    """Why a batched pass was given up, as fewer_copies_per_pass says it: the error's first line, cut short."""
    return f"this model cannot run batched ({str(error).splitlines()[0][:100]})"


def result_of(estimate: Estimate) -> StepResult:
    """What the trainer is told of a step: loss and passes, and a seed-scalar estimate's seeds and scalars
    (what a device uploads in seeds mode)."""
    if isinstance(estimate, SeedScalarEstimate):
        return StepResult(estimate.loss, estimate.forward_passes, list(estimate.seeds), list(estimate.scalars))
    return StepResult(estimate.loss, estimate.forward_passes)
