"""Learning rate at a step: linear warmup, then constant (MeZO's choice for ZO), linear or cosine
decay, or warmup-stable-decay (wsd).

wsd keeps the constant rate a run learns at and cools it down linearly to zero over the run's last
fifth (Hagele et al. 2024, "Scaling laws and compute-optimal training beyond fixed training
durations"): ZO-SGD on SmolLM2 learned at a constant 1e-3 for 1,000 steps and then began to lose
accuracy, while cosine or linear decay halve the rate long before the run has learned what it can.
"""

from __future__ import annotations

import math

COOLDOWN_FRACTION = 0.2


def learning_rate(base: float, step: int, total: int, schedule: str, warmup: int) -> float:
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    if schedule == "wsd":
        cooldown = max(round(COOLDOWN_FRACTION * total), 1)
        return base * min(1.0, (total - step) / cooldown)
    progress = (step - warmup) / max(total - warmup, 1)
    if schedule == "linear":
        return base * (1 - progress)
    return base * 0.5 * (1 + math.cos(math.pi * progress))
