"""Hybrid ZO/FO (ZO-Bench): backprop where it is cheap, two-point ZO everywhere else.

The cheap part is the encoder's new classification head or, for a model without one, the
trainable tensors of the last layer: backprop through it needs only that part's activations,
because nothing before it requires a gradient. ZO then perturbs fewer coordinates (lower
variance), and the part that decides the output gets its exact gradient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from edge_runtime.estimators.base import (
    Estimate,
    GradientEstimator,
    Params,
    SeedScalarEstimate,
    check_finite,
)
from edge_runtime.estimators.zo import TwoPointZO
from edge_runtime.heads.base import Batch
from edge_runtime.objective import Objective
from edge_runtime.seeded.blocks import block_of

HEAD_MARKER = "modules_to_save"  # peft keeps an encoder's trainable head under this name


def backprop_part(names: list[str]) -> list[str]:
    """The head's tensors if the model has a trainable head, else those of its last layer."""
    head = [n for n in names if HEAD_MARKER in n]
    if head:
        return head
    last = block_of(names[-1], "layer") if names else None
    return [n for n in names if block_of(n, "layer") == last]


@contextmanager
def gradients_only_for(params: Params, names: set[str]) -> Iterator[None]:
    """Turn requires_grad off outside `names`, so autograd records nothing before that part."""
    others = [p for n, p in params.items() if n not in names and p.requires_grad]
    for p in others:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in others:
            p.requires_grad_(True)


@dataclass
class HybridEstimate(Estimate):
    zo: SeedScalarEstimate
    backprop_names: list[str]

    def gradients(self, params: Params):
        yield from self.zo.gradients({n: p for n, p in params.items() if n not in self.backprop_names})
        for name in self.backprop_names:
            p = params[name]
            yield name, p, p.grad


class HybridZOFO(GradientEstimator):
    """2q forward passes for the ZO part plus one forward+backward that stops at the cheap part."""

    def __init__(self, zo: TwoPointZO) -> None:
        self.zo = zo

    def estimate(self, objective: Objective, batch: Batch, seed: int) -> HybridEstimate:
        fo_names = backprop_part(list(objective.params))
        zo_params = {n: p for n, p in objective.params.items() if n not in fo_names}
        zo = self.zo.estimate(replace(objective, params=zo_params), batch, seed)
        for name in fo_names:
            objective.params[name].grad = None
        with torch.enable_grad(), gradients_only_for(objective.params, set(fo_names)):
            loss = objective.backward(batch)
        check_finite(loss)
        return HybridEstimate(loss, zo.forward_passes + 1, zo, fo_names)
