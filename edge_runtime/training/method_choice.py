"""`--method auto`: the method that reaches the target accuracy soonest within the memory cap.

Every candidate method is first planned under the cap (a method that does not fit at micro-batch 1
is out), then one step of each that fits is timed on this device at its planned micro-batch, and
the candidates are ranked by predicted time to the target (edge_runtime/costs/time_to_target.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from edge_runtime.costs import time_to_target
from edge_runtime.estimators import EstimatorSettings, build_method
from edge_runtime.objective import Objective
from edge_runtime.tasks import Example
from edge_runtime.units import format_bytes


@dataclass(frozen=True)
class Candidate:
    method: str
    needs: int | None = None  # planned bytes (estimate + margin) under a cap
    refused: str | None = None  # why it does not fit the cap
    micro_batch: int | None = None
    perturbations_per_pass: int = 1
    step_seconds: float | None = None


def time_one_step(
    method: str,
    settings: EstimatorSettings,
    objective: Objective,
    examples: list[Example],
    micro_batch: int | None,
    perturbations_per_pass: int,
    device: torch.device,
) -> float:
    """Seconds of one step at learning rate 0 (the parameters do not move), after one warm-up step."""
    built = build_method(method, settings)
    objective.micro_batch, objective.perturbations_per_pass = micro_batch, perturbations_per_pass
    batch = objective.encode(examples).to(device)
    for p in objective.params.values():
        p.grad = None
    for _ in range(2):
        started = time.perf_counter()
        built.step(objective, batch, 0.0, 0)
        seconds = time.perf_counter() - started
    for p in objective.params.values():
        p.grad = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return seconds


def choose(candidates: list[Candidate], model_kind: str) -> tuple[Candidate, str]:
    """The candidate with the shortest predicted time to the target, and one line saying why."""
    timed = [c for c in candidates if c.step_seconds is not None]
    if not timed:
        raise ValueError("no candidate was timed")
    best = min(timed, key=lambda c: time_to_target.rank(c.method, c.step_seconds, model_kind))
    return best, "; ".join(_describe(c, model_kind) for c in [best, *[c for c in candidates if c is not best]])


def _describe(c: Candidate, model_kind: str) -> str:
    if c.refused:
        return f"{c.method}: {c.refused}"
    fits = f"fits {format_bytes(c.needs)} at micro-batch {c.micro_batch}, " if c.needs is not None else ""
    return f"{c.method}: {fits}{time_to_target.describe(c.method, c.step_seconds, model_kind)}"
