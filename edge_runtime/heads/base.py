"""One interface for both ways of answering a task.

A head encodes examples into a `Batch` of tensors once per step (so the several forward passes
of a ZO step all see the same batch) and maps a forward function's outputs to scores of shape
[batch, candidates]. The loss is cross-entropy over those scores in fp32, whatever the precision
of the base model.

A head may hold constants fixed by its warm start (an encoder's logit scale, a causal LM's
calibration offsets): not trained, but part of the objective, so they travel with everything that
must reproduce its scores (checkpoints, adapters, federated tasks, exported graphs) as `constants()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from edge_runtime.tasks.base import Example

Forward = Callable[..., object]


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    # Head-specific index tensors (positions to read, candidate token masks, ...).
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Batch:
        move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return Batch(move(self.inputs), self.labels.to(device), move(self.extras))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class Head(ABC):
    # Where rows shorter than the batch are padded, and with which token. Heads pad their own
    # batches when they encode; `pad` lets several batches be stacked into one (the fleet emulator
    # runs many devices' batches through the shared base at once).
    padding_side: str = "right"
    pad_token_id: int = 0

    def pad(self, batch: Batch, width: int) -> Batch:
        """The batch with its inputs padded to `width` tokens; masked padding leaves the scores as they were."""
        inputs = {}
        for key, value in batch.inputs.items():
            missing = width - value.shape[-1]
            fill = self.pad_token_id if key == "input_ids" else 0
            padding = value.new_full((*value.shape[:-1], missing), fill)
            inputs[key] = torch.cat([padding, value] if self.padding_side == "left" else [value, padding], dim=-1)
        return Batch(inputs, batch.labels, batch.extras)

    def constants(self) -> dict[str, float | list[float]]:
        """The head's warm-start constants, as JSON-ready values; none by default."""
        return {}

    def load_constants(self, constants: dict) -> None:
        """Set what `constants()` returned (heads with constants override this)."""
        if constants:
            raise ValueError(f"{type(self).__name__} has no constants, got {', '.join(constants)}")

    @abstractmethod
    def encode(self, examples: Sequence[Example]) -> Batch: ...

    @abstractmethod
    def scores(self, forward: Forward, batch: Batch) -> torch.Tensor: ...

    def loss(self, forward: Forward, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.scores(forward, batch).float(), batch.labels)
