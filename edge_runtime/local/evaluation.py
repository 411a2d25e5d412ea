"""Accuracy and mean loss of the current parameters on a list of examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edge_runtime.objective import Objective
from edge_runtime.tasks import Example


@dataclass
class EvalResult:
    accuracy: float
    loss: float


@torch.no_grad()
def evaluate(objective: Objective, examples: Sequence[Example], batch_size: int, device: torch.device) -> EvalResult:
    correct, loss_sum = 0, 0.0
    for start in range(0, len(examples), batch_size):
        batch = objective.head.encode(examples[start : start + batch_size]).to(device)
        scores = objective.scores(batch).float()
        correct += int((scores.argmax(-1) == batch.labels).sum())
        loss_sum += float(F.cross_entropy(scores, batch.labels, reduction="sum"))
    return EvalResult(correct / len(examples), loss_sum / len(examples))
