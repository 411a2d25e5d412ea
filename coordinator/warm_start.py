"""The federated warm start: a head solved once from every device's statistics, forward passes only.

An encoder's head (class centroids or ridge, FedNCM / Fed3R) and a causal LM's centred calibration
need the devices' data; a zero-shot head and a content-free calibration do not, and the coordinator
computes them itself before the first round. When the devices' data is needed, round 0 is a
statistics round: every online device runs forward passes over its local examples and uploads the
sufficient statistics (class counts, feature sums and the Gram matrix; or score sums), which add up
exactly to those of the pooled data. Merging that round solves the head into the global state and
fixes the head's constants (logit scale or calibration offsets) that every later task carries.
Statistics are checked like any update: shapes, finiteness, and the bounds every honest sender
meets (warm_start/statistics.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from coordinator.validation import RejectedUpdate
from edge_runtime.errors import UserError
from edge_runtime.protocol import pb
from edge_runtime.warm_start import FeatureStatistics, ScoreStatistics, StatisticsError, fit_head, score_offsets
from edge_runtime.warm_start.linear_head import ENCODER_WARM_STARTS, solver_for


class HeadHost(Protocol):
    """What the warm start needs from the coordinator's copy of the model."""

    kind: str  # encoder | causal_lm

    def head_layout(self) -> HeadLayout: ...
    def zero_shot_head(self) -> tuple[dict[str, np.ndarray], dict]: ...
    def content_free_offsets(self) -> list[float]: ...


@dataclass(frozen=True)
class HeadLayout:
    """Shapes of the statistics a device sends, and where a solved head goes in the state."""

    classes: int  # classes of a classification head; 2 ("wrong", "right") for multiple choice
    width: int  # an encoder's embedding width; 0 for a causal LM
    candidates: int | None  # multiple choice: candidates per example
    weight: str = ""  # an encoder's classifier tensors among the trainable ones
    bias: str = ""


@dataclass(frozen=True)
class WarmStartPlan:
    kind: str  # none | zero-shot | content-free | features | scores
    solver: str = "auto"  # features: centroids | ridge | auto (by the examples the devices send)

    @property
    def needs_devices(self) -> bool:
        return self.kind in ("features", "scores")


def plan_warm_start(kind: str, requested: str, calibration: str) -> WarmStartPlan:
    """What the configured warm start means for this model: `requested` for an encoder, the
    template's `calibration` for a causal LM."""
    if kind == "causal_lm":
        return WarmStartPlan({"none": "none", "content-free": "content-free", "centred": "scores"}[calibration])
    if requested not in ("auto", *ENCODER_WARM_STARTS):
        raise UserError(f"unknown warm start {requested!r}; choose one of: auto, {', '.join(ENCODER_WARM_STARTS)}")
    if requested in ("none", "zero-shot"):
        return WarmStartPlan(requested)
    return WarmStartPlan("features", requested)


def initial_head(plan: WarmStartPlan, host: HeadHost) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors to set, head constants) of a warm start the coordinator computes alone."""
    if plan.kind == "zero-shot":
        return host.zero_shot_head()
    if plan.kind == "content-free":
        return {}, {"score_offsets": host.content_free_offsets()}
    return {}, {}


def statistics_task_fields(task: pb.Task, examples: int) -> pb.Task:
    task.work = pb.Task.STATISTICS
    task.statistics_examples = examples
    return task


def check_statistics(
    plan: WarmStartPlan, layout: HeadLayout, header: pb.UpdateHeader, task: pb.Task, tensors: Mapping[str, np.ndarray]
) -> FeatureStatistics | ScoreStatistics:
    if header.task_id != task.task_id or header.round != task.round:
        raise RejectedUpdate(
            f"statistics are for task {header.task_id!r} of round {header.round}, "
            f"the device's task is {task.task_id!r} of round {task.round}"
        )
    if not 0 < header.examples <= task.statistics_examples:
        raise RejectedUpdate(
            f"claims statistics of {header.examples} examples; the task allowed 1 to {task.statistics_examples}"
        )
    # A multiple-choice example gives one (prompt, candidate) pair per candidate.
    rows = header.examples * (layout.candidates or 1)
    try:
        if plan.kind == "features":
            return FeatureStatistics.from_tensors(tensors, layout.classes, layout.width, rows)
        return ScoreStatistics.from_tensors(tensors, layout.classes, header.examples)
    except StatisticsError as error:
        raise RejectedUpdate(str(error)) from None


def solve(
    plan: WarmStartPlan, layout: HeadLayout, received: Sequence[FeatureStatistics | ScoreStatistics]
) -> tuple[dict[str, np.ndarray], dict, dict]:
    """(tensors to set, head constants, what the round's metrics say of it) from a round's statistics."""
    total = received[0]
    for stats in received[1:]:
        total = total.merged(stats)
    if plan.kind == "scores":
        offsets = score_offsets(total.sums / total.count)
        return (
            {},
            {"score_offsets": offsets.tolist()},
            {"warm_start": "calibration centred", "warm_start_examples": total.count},
        )
    solver = solver_for(plan.solver, total.examples // (layout.candidates or 1))
    try:
        head = fit_head(total, solver, candidates=layout.candidates)
    except StatisticsError as error:
        raise UserError(f"the devices' statistics cannot give a {solver} head: {error}") from None
    tensors = {layout.weight: head.weight.astype(np.float32), layout.bias: head.bias.astype(np.float32)}
    return (
        tensors,
        {"logit_scale": head.temperature},
        {"warm_start": solver, "warm_start_examples": total.examples, "logit_scale": head.temperature},
    )
