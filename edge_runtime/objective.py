"""The function every estimator differentiates: loss(trainable params; batch).

Estimators see only this object. It exposes the loss in the style of torch.func: `loss(batch)`
runs the module with the parameters it currently holds (what in-place ZO needs), `losses_at(points,
batch)` runs it at many replacement points in one batched pass (ZO's perturbations together),
`jvp(batch, primals, tangents)` runs it with replacement tensors under forward-mode AD (what
Forward-Grad needs), and `jvps_at` along many tangents in one pass. Estimators call nothing else of
the model, which is what lets the fleet emulator run many devices' passes as one batch
(fleet/batched_forward.py).

With a micro-batch size, `encode` splits a step's examples into micro-batches and every loss is
their example-weighted mean: the same value as one pass over the whole batch, at the activation
memory of one micro-batch (what a memory cap needs). Backprop must free each micro-batch's graph
before the next, so it goes through `backward`. `perturbations_per_pass` is the same kind of
setting for two-point ZO and Forward-Grad: how many perturbed copies (tangents) of the trained
tensors go through one batched pass (1: one at a time; for ZO in place, at inference memory).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from edge_runtime.heads.base import Batch, Head
from edge_runtime.models.masks import always_build_masks
from edge_runtime.tasks import Example


def trainable_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable parameters in registration order: the order that seeds and updates follow."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


@dataclass
class MicroBatches:
    """The micro-batches of one step; like a `Batch`, its length is its number of examples."""

    parts: list[Batch]

    def to(self, device: torch.device | str) -> MicroBatches:
        """The same micro-batches, moved to `device`."""
        return MicroBatches([b.to(device) for b in self.parts])

    def __len__(self) -> int:
        return sum(len(b) for b in self.parts)


Step = Batch | MicroBatches


@dataclass
class Objective:
    """All an estimator sees of the model, loss(trained tensors; batch): the module, the head that turns its
    outputs into a loss, and the trained tensors (by default the module's trainable parameters, in
    registration order). `micro_batch` caps the examples of one pass; `perturbations_per_pass` is how many
    perturbed copies (tangents) of the trained tensors one batched pass takes."""

    module: nn.Module
    head: Head
    params: dict[str, nn.Parameter] = field(default_factory=dict)
    micro_batch: int | None = None
    perturbations_per_pass: int = 1

    def __post_init__(self) -> None:
        if not self.params:
            self.params = trainable_parameters(self.module)

    def encode(self, examples: Sequence[Example]) -> Step:
        """A step's examples encoded once: one batch, or micro-batches of at most `micro_batch` examples."""
        if self.micro_batch is None or len(examples) <= self.micro_batch:
            return self.head.encode(examples)
        return MicroBatches(
            [self.head.encode(examples[i : i + self.micro_batch]) for i in range(0, len(examples), self.micro_batch)]
        )

    def loss(self, batch: Step) -> torch.Tensor:
        """The loss with the tensors the module holds now (what in-place ZO perturbs)."""
        return weighted_mean(lambda b: self.head.loss(self.module, b), batch)

    def functional_loss(self, params: Mapping[str, torch.Tensor], batch: Step) -> torch.Tensor:
        """The loss with `params` in place of the module's own tensors (those not named keep theirs); the
        module is left as it was."""

        def forward(**inputs):
            return torch.func.functional_call(self.module, dict(params), args=(), kwargs=inputs, strict=False)

        return weighted_mean(lambda b: self.head.loss(forward, b), batch)

    def jvp(
        self, batch: Step, primals: Mapping[str, torch.Tensor], tangents: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, d loss / d params . tangents) at `primals`, in one forward-mode pass."""
        return torch.func.jvp(lambda params: self.functional_loss(params, batch), (dict(primals),), (dict(tangents),))

    @torch.no_grad()
    def losses_at(self, points: Mapping[str, torch.Tensor], batch: Step) -> torch.Tensor:
        """The loss at n points in one batched pass: `points` holds each trained tensor stacked n
        times along a new leading axis. The base's matmuls run on the n points' activations
        together, so its weights are read once for all of them (two-point ZO's perturbations)."""
        with always_build_masks():
            return torch.vmap(lambda point: self.functional_loss(point, batch))(dict(points))

    def jvps_at(
        self, batch: Step, primals: Mapping[str, torch.Tensor], tangents: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`jvp` along n tangents in one batched pass: `tangents` holds each trained tensor's n
        tangents stacked along a new leading axis; returns the n losses and n derivatives."""
        with always_build_masks():
            return torch.vmap(lambda tangent: self.jvp(batch, primals, tangent))(dict(tangents))

    def backward(self, batch: Step) -> float:
        """Accumulate d loss / d params into .grad; returns the loss."""
        value = 0.0
        for part, weight in weighted_parts(batch):
            loss = self.head.loss(self.module, part) * weight
            loss.backward()
            value += loss.item()
        return value

    @torch.no_grad()
    def scores(self, batch: Batch) -> torch.Tensor:
        """The head's scores, [batch, candidates], at the tensors the module holds now; no gradients."""
        return self.head.scores(self.module, batch)


def weighted_parts(step: Step) -> list[tuple[Batch, float]]:
    """A step's batches, each with its share of the step's examples (one batch of weight 1 unless micro-batched)."""
    if not isinstance(step, MicroBatches):
        return [(step, 1.0)]
    return [(part, len(part) / len(step)) for part in step.parts]


def weighted_mean(loss: Callable[[Batch], torch.Tensor], batch: Step) -> torch.Tensor:
    """loss(batch), or for micro-batches the mean of their losses weighted by their examples."""
    if not isinstance(batch, MicroBatches):
        return loss(batch)
    return sum(loss(part) * weight for part, weight in weighted_parts(batch))
