"""Learning rate at a step: linear warmup, then constant (MeZO's choice for ZO), linear or cosine decay."""

from __future__ import annotations

import math


def learning_rate(base: float, step: int, total: int, schedule: str, warmup: int) -> float:
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    progress = (step - warmup) / max(total - warmup, 1)
    if schedule == "linear":
        return base * (1 - progress)
    return base * 0.5 * (1 + math.cos(math.pi * progress))
