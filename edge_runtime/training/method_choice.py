"""`--method auto`: the method that reaches the target accuracy soonest within the memory cap.

A device owner wants accuracy soon, not the smallest peak. So every candidate method is first
planned under the cap (a method that does not fit at micro-batch 1 is out), then one step of each
that fits is timed on this device at its planned micro-batch, and the predicted time to the target
is the steps that method took to gain `TARGET_GAIN` in the measured convergence runs times that
step time. Methods those runs never saw gain it rank after every method that did, by step time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from edge_runtime.estimators import EstimatorSettings, build_method
from edge_runtime.objective import Objective
from edge_runtime.tasks import Example
from edge_runtime.units import format_bytes

CANDIDATES = ("fo-adam", "fo-adam-ckpt", "forward-grad", "zo-sgd")
TARGET_GAIN = "+5 points"
# Optimizer steps to first score 5 points above the warm start on SST-2 dev (batch 16, LoRA r=8),
# read from the curves in docs/benchmarks/convergence/convergence-{minilm,smollm2}-sst2.json
# (each is the first evaluation point at or past the gain, so an upper bound). Checkpointed
# backprop computes backprop's gradient, so it takes backprop's steps. A method absent from a row
# did not gain 5 points within the run: MiniLM 4,000 forward passes (ZO-SGD 0.768 -> 0.765,
# Forward-Grad -> 0.745), SmolLM2 800 (ZO-SGD 0.770 -> 0.776).
STEPS_TO_TARGET = {
    "encoder": {"fo-adam": 500, "fo-adam-ckpt": 500},  # 0.768 -> 0.822 at step 500
    "causal_lm": {"fo-adam": 200, "fo-adam-ckpt": 200},  # 0.770 -> 0.846 at step 200
}
MEASURED_PASSES = {"encoder": 4000, "causal_lm": 800}
MEASURED_ON = {"encoder": "MiniLM", "causal_lm": "SmolLM2-135M"}


@dataclass(frozen=True)
class Candidate:
    method: str
    needs: int | None = None  # planned bytes (estimate + margin) under a cap
    refused: str | None = None  # why it does not fit the cap
    micro_batch: int | None = None
    perturbations_per_pass: int = 1
    step_seconds: float | None = None


def time_one_step(method: str, settings: EstimatorSettings, objective: Objective, examples: list[Example],
                  micro_batch: int | None, perturbations_per_pass: int, device: torch.device) -> float:
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
    steps = STEPS_TO_TARGET[model_kind]
    timed = [c for c in candidates if c.step_seconds is not None]
    if not timed:
        raise ValueError("no candidate was timed")
    best = min(timed, key=lambda c: (c.method not in steps, steps.get(c.method, 1) * c.step_seconds))
    return best, "; ".join(_describe(c, steps, model_kind) for c in [best, *[c for c in candidates if c is not best]])


def _describe(c: Candidate, steps: dict[str, int], model_kind: str) -> str:
    if c.refused:
        return f"{c.method}: {c.refused}"
    fits = f"fits {format_bytes(c.needs)} at micro-batch {c.micro_batch}, " if c.needs is not None else ""
    if c.method in steps:
        minutes = steps[c.method] * c.step_seconds / 60
        return (f"{c.method}: {fits}{c.step_seconds:.2f} s/step, about {steps[c.method]} steps to {TARGET_GAIN} "
                f"as measured on {MEASURED_ON[model_kind]} SST-2 (~{minutes:.1f} min)")
    return (f"{c.method}: {fits}{c.step_seconds:.2f} s/step, {TARGET_GAIN} not reached in "
            f"{MEASURED_PASSES[model_kind]:,} forward passes on {MEASURED_ON[model_kind]} SST-2")
