"""What a device hands back after a task, on any backend (this module imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_runtime.protocol import pb


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


def update_header(task: pb.Task, result: LocalResult) -> pb.UpdateHeader:
    return pb.UpdateHeader(task_id=task.task_id, round=task.round, examples=result.examples, steps=result.steps,
                           loss_before=result.loss_before, loss_after=result.loss_after,
                           train_seconds=result.seconds,
                           scalars=result.scalars if task.upload == "seeds" else [])
