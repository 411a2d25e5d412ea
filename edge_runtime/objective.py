"""The function every estimator differentiates: loss(trainable params; batch).

Estimators see only this object. It exposes the loss two ways, in the style of torch.func:
`loss(batch)` runs the module with the parameters it currently holds (what in-place ZO needs),
`functional_loss(params, batch)` runs it with a dict of replacement tensors (what jvp needs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from edge_runtime.heads.base import Batch, Head


def trainable_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable parameters in registration order: the order that seeds and updates follow."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


@dataclass
class Objective:
    module: nn.Module
    head: Head
    params: dict[str, nn.Parameter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.params:
            self.params = trainable_parameters(self.module)

    def loss(self, batch: Batch) -> torch.Tensor:
        return self.head.loss(self.module, batch)

    def functional_loss(self, params: Mapping[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        def forward(**inputs):
            return torch.func.functional_call(self.module, dict(params), args=(), kwargs=inputs, strict=False)

        return self.head.loss(forward, batch)

    @torch.no_grad()
    def scores(self, batch: Batch) -> torch.Tensor:
        return self.head.scores(self.module, batch)
