"""Checks an update must pass before it is stored, let alone merged.

Everything a device claims is checked against what the coordinator asked of it: the tensors of
its own assignment with their real shapes, at most the steps and examples it was given, finite
values, and a norm bound, so one broken or hostile device cannot poison the global state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from edge_runtime.protocol import pb


class RejectedUpdate(ValueError):
    """The reason is sent back to the device and written to the ledger."""


def check_header(header: pb.UpdateHeader, task: pb.Task) -> None:
    if header.task_id != task.task_id or header.round != task.round:
        raise RejectedUpdate(f"update is for task {header.task_id!r} of round {header.round}, "
                             f"the device's task is {task.task_id!r} of round {task.round}")
    if not 0 < header.steps <= task.steps:
        raise RejectedUpdate(f"claims {header.steps} steps; the task asked for 1 to {task.steps}")
    if not 0 < header.examples <= header.steps * task.batch_size:
        raise RejectedUpdate(f"claims {header.examples} examples in {header.steps} steps of batch {task.batch_size}")
    for name in ("loss_before", "loss_after", "train_seconds"):
        if not math.isfinite(getattr(header, name)):
            raise RejectedUpdate(f"{name} is not finite")


def check_seeds(header: pb.UpdateHeader, task: pb.Task, max_scalar: float) -> None:
    expected = header.steps * task.queries
    if len(header.scalars) != expected:
        raise RejectedUpdate(f"{len(header.scalars)} scalars for {header.steps} steps of {task.queries} queries "
                             f"(expected {expected})")
    values = np.asarray(header.scalars, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise RejectedUpdate("scalars are not all finite")
    if values.size and np.max(np.abs(values)) > max_scalar:
        raise RejectedUpdate(f"a projected gradient exceeds {max_scalar:g} in magnitude")


def check_deltas(deltas: Mapping[str, np.ndarray], task: pb.Task, shapes: Mapping[str, tuple[int, ...]],
                 max_norm: float) -> None:
    assigned = set(task.tensors)
    if set(deltas) != assigned:
        extra, missing = sorted(set(deltas) - assigned), sorted(assigned - set(deltas))
        raise RejectedUpdate(f"update tensors differ from the assignment (not assigned: {extra[:3]}, "
                             f"missing: {missing[:3]})")
    total = 0.0
    for name, delta in deltas.items():
        if tuple(delta.shape) != tuple(shapes[name]):
            raise RejectedUpdate(f"{name} has shape {tuple(delta.shape)}, the model's is {tuple(shapes[name])}")
        if not np.all(np.isfinite(delta)):
            raise RejectedUpdate(f"{name} holds NaN or Inf")
        total += float(np.sum(delta.astype(np.float64) ** 2))
    if math.sqrt(total) > max_norm:
        raise RejectedUpdate(f"update norm {math.sqrt(total):.3g} exceeds the bound {max_norm:g}")
