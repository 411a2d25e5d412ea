"""A task's local steps and what a device hands back, on any backend (this module imports no torch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from edge_runtime.protocol import pb
from edge_runtime.seeded.draws import step_seed
from edge_runtime.seeded.scalars import NonFiniteLoss, StepResult
from edge_runtime.tasks import Example
from edge_runtime.tasks.batches import BatchSampler

B = TypeVar("B", bound=Sized)


@dataclass
class LocalResult:
    deltas: dict[str, np.ndarray]  # final minus starting value of each trained tensor
    scalars: list[float]  # projected gradients, steps x queries, step-major (seed-and-scalar upload)
    losses: list[float] = field(default_factory=list)  # training loss of each local step
    steps: int = 0
    examples: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why fewer steps than asked were done, if so
    seq_lens: list[int] = field(default_factory=list)  # padded tokens per example of each step (its FLOPs)
    step_peak_bytes: int = 0  # tensor bytes the first step allocated at most, when measured

    @property
    def loss_before(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def loss_after(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


def head_constants(task: pb.Task) -> dict:
    """The warm-start constants a task carries, as `Head.load_constants` takes them."""
    constants: dict = {}
    if task.HasField("logit_scale"):
        constants["logit_scale"] = task.logit_scale
    if task.score_offsets:
        constants["score_offsets"] = list(task.score_offsets)
    return constants


def update_header(task: pb.Task, result: LocalResult) -> pb.UpdateHeader:
    """What a device reports with its upload; a STATISTICS task took no steps and has no losses."""
    if task.work == pb.Task.STATISTICS:
        return pb.UpdateHeader(
            task_id=task.task_id, round=task.round, examples=result.examples, train_seconds=result.seconds
        )
    return pb.UpdateHeader(
        task_id=task.task_id,
        round=task.round,
        examples=result.examples,
        steps=result.steps,
        loss_before=result.loss_before,
        loss_after=result.loss_after,
        train_seconds=result.seconds,
        scalars=result.scalars if task.upload == pb.Task.SEEDS else [],
    )


def run_local_steps(
    task: pb.Task,
    examples: Sequence[Example],
    encode: Callable[[list[Example]], B],
    step: Callable[[B, int, int], StepResult],
    padded_length: Callable[[B], int],
) -> LocalResult:
    """The task's steps on its seeded batches: `step(batch, step index, step seed)` estimates and
    updates on the backend. A non-finite loss ends the steps early, keeping those already done."""
    sampler = BatchSampler(examples, task.batch_size, task.seed)
    result = LocalResult(deltas={}, scalars=[])
    for index in range(task.steps):
        batch = encode(sampler.batch(index))
        try:
            outcome = step(batch, index, step_seed(task.seed, index))
        except NonFiniteLoss as error:
            result.stopped = f"non-finite loss at step {index}: {error}"
            break
        result.seq_lens.append(padded_length(batch))
        result.losses.append(outcome.loss)
        result.scalars.extend(outcome.scalars)
        result.steps += 1
        result.examples += len(batch)
    return result
