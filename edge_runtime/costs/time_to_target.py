"""Predicted time to a target accuracy: the steps a method took to reach it in the measured
convergence runs, times the seconds one of its steps takes on a device.

A device owner wants accuracy soon, not the smallest peak, so both `--method auto` on one device
(timing a real step) and the coordinator's per-device choice (the cost model's step seconds) rank
methods by this one rule. Methods the runs never saw reach the target rank after every method that
did, by step time.
"""

from __future__ import annotations

CANDIDATES = ("fo-adam", "fo-adam-ckpt", "forward-grad", "zo-sgd")
TARGET_GAIN = "+5 points"
# Optimizer steps to first score 5 points above the warm start on SST-2 dev (batch 16, LoRA r=8),
# read from the curves in docs/benchmarks/convergence/convergence-{minilm,smollm2}-sst2.json
# (each is the first evaluation point at or past the gain, so an upper bound). Checkpointed
# backprop computes backprop's gradient, so it takes backprop's steps. A method absent from a row
# did not gain 5 points on every seed run: PASSES_WITHOUT_TARGET says in how many forward passes.
STEPS_TO_TARGET = {
    "encoder": {"fo-adam": 500, "fo-adam-ckpt": 500},  # 0.768 -> 0.822 at step 500
    "causal_lm": {"fo-adam": 200, "fo-adam-ckpt": 200},  # 0.770 -> 0.846 at step 200
}
# The learning rates those steps were measured at: a method that takes them at another rate (one
# rate for Adam and for ZO-SGD alike) would not take those steps, so whoever picks by the table
# trains at them. ZO-SGD on a causal LM trains at the best rate of the longer SmolLM2 runs
# (convergence-smollm2-sst2-hour.json, -wsd.json): 1e-3 gained 4.8 points in 900-1,040 steps, where
# 5e-4 gained 0.6 in 400 and 2e-3 diverged within 400 steps.
MEASURED_LR = {
    "encoder": {"fo-adam": 2e-4, "fo-adam-ckpt": 2e-4, "forward-grad": 1e-3, "zo-sgd": 1e-3},
    "causal_lm": {"fo-adam": 1e-4, "fo-adam-ckpt": 1e-4, "zo-sgd": 1e-3},
}
# The longest measured runs of the methods absent from STEPS_TO_TARGET, in forward passes
# (docs/benchmarks/convergence/notes.md). MiniLM: ZO-SGD's hour from the ridge head (5,782 steps,
# 0.781 -> 0.792 at best), Forward-Grad 4,000 (0.768 -> 0.745). SmolLM2: ZO-SGD's top-12-layer
# recipe for 2,800 steps on two seeds (0.779 -> 0.818 and 0.812; the whole model's clipped recipe
# gained 5.5 points on one seed of two), Forward-Grad 800.
PASSES_WITHOUT_TARGET = {
    "encoder": {"zo-sgd": 11_564, "forward-grad": 4_000},
    "causal_lm": {"zo-sgd": 5_600, "forward-grad": 800},
}
MEASURED_ON = {"encoder": "MiniLM", "causal_lm": "SmolLM2-135M"}


def learning_rate(method: str, model_kind: str) -> float | None:
    """The rate the method's steps were measured at; None where the runs did not train it."""
    return MEASURED_LR[model_kind].get(method)


def rank(method: str, step_seconds: float, model_kind: str) -> tuple[bool, float]:
    """Sort key: methods that reached the target first, by predicted seconds; the rest by step time."""
    steps = STEPS_TO_TARGET[model_kind]
    return method not in steps, steps.get(method, 1) * step_seconds


def describe(method: str, step_seconds: float, model_kind: str) -> str:
    """What the prediction rests on, for a one-line reason."""
    steps = STEPS_TO_TARGET[model_kind].get(method)
    if steps is None:
        passes = PASSES_WITHOUT_TARGET[model_kind].get(method)
        within = f" in {passes:,} forward passes" if passes else ""
        return f"{step_seconds:.2f} s/step, {TARGET_GAIN} not reached{within} on {MEASURED_ON[model_kind]} SST-2"
    return (
        f"{step_seconds:.2f} s/step, about {steps} steps to {TARGET_GAIN} as measured on "
        f"{MEASURED_ON[model_kind]} SST-2 (~{steps * step_seconds / 60:.1f} min)"
    )
