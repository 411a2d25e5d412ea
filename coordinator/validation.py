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
from edge_runtime.protocol.specs import method_of


class RejectedUpdate(ValueError):
    """The reason is sent back to the device and written to the ledger."""


class BadRegistration(ValueError):
    """A registration the coordinator refuses to plan with."""


MAX_EXAMPLES = 2**31  # a device's declared examples weigh its planning; far beyond any phone's data
MAX_LABEL = 64  # characters of a profile name or class
MAX_LIST = 16  # backends or precisions a profile may list


def check_registration(request: pb.RegisterRequest) -> None:
    """Planning divides by a profile's throughput and bandwidths and adds its latency, so a NaN, an
    infinity or a negative number there would break the round plan for every device."""
    profile = request.profile
    numbers = {field.name: value for field, value in profile.ListFields() if isinstance(value, float)}
    bad = sorted(name for name, value in numbers.items() if not (math.isfinite(value) and value >= 0))
    if bad:
        raise BadRegistration(f"profile fields must be finite and not negative: {', '.join(bad)}")
    if profile.memory_cap_bytes <= 0 or not (profile.gflops_fp32 > 0 or profile.gflops_int8 > 0):
        raise BadRegistration("a profile needs a memory cap and a throughput")
    if max(len(profile.name), len(profile.device_class)) > MAX_LABEL:
        raise BadRegistration(f"profile name and class are at most {MAX_LABEL} characters")
    lists = (profile.backends, profile.precisions)
    if any(len(items) > MAX_LIST or any(len(item) > MAX_LABEL for item in items) for items in lists):
        raise BadRegistration(f"a profile lists at most {MAX_LIST} backends and precisions, each a short name")
    if request.examples > MAX_EXAMPLES:
        raise BadRegistration(f"a device declares at most {MAX_EXAMPLES} examples")


def check_header(header: pb.UpdateHeader, task: pb.Task) -> None:
    if header.task_id != task.task_id or header.round != task.round:
        raise RejectedUpdate(
            f"update is for task {header.task_id!r} of round {header.round}, "
            f"the device's task is {task.task_id!r} of round {task.round}"
        )
    if not 0 < header.steps <= task.steps:
        raise RejectedUpdate(f"claims {header.steps} steps; the task asked for 1 to {task.steps}")
    if not 0 < header.examples <= header.steps * task.batch_size:
        raise RejectedUpdate(f"claims {header.examples} examples in {header.steps} steps of batch {task.batch_size}")
    for name in ("loss_before", "loss_after", "train_seconds"):
        if not math.isfinite(getattr(header, name)):
            raise RejectedUpdate(f"{name} is not finite")


def check_seeds(header: pb.UpdateHeader, task: pb.Task, max_scalar: float) -> None:
    queries = method_of(task).settings.queries
    expected = header.steps * queries
    if len(header.scalars) != expected:
        raise RejectedUpdate(
            f"{len(header.scalars)} scalars for {header.steps} steps of {queries} queries (expected {expected})"
        )
    values = np.asarray(header.scalars, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise RejectedUpdate("scalars are not all finite")
    if values.size and np.max(np.abs(values)) > max_scalar:
        raise RejectedUpdate(f"a projected gradient exceeds {max_scalar:g} in magnitude")


def check_deltas(
    deltas: Mapping[str, np.ndarray], task: pb.Task, shapes: Mapping[str, tuple[int, ...]], max_norm: float
) -> None:
    assigned = set(task.tensors)
    if set(deltas) != assigned:
        extra, missing = sorted(set(deltas) - assigned), sorted(assigned - set(deltas))
        raise RejectedUpdate(
            f"update tensors differ from the assignment (not assigned: {extra[:3]}, missing: {missing[:3]})"
        )
    total = 0.0
    for name, delta in deltas.items():
        if tuple(delta.shape) != tuple(shapes[name]):
            raise RejectedUpdate(f"{name} has shape {tuple(delta.shape)}, the model's is {tuple(shapes[name])}")
        if not np.all(np.isfinite(delta)):
            raise RejectedUpdate(f"{name} holds NaN or Inf")
        total += float(np.sum(delta.astype(np.float64) ** 2))
    if math.sqrt(total) > max_norm:
        raise RejectedUpdate(f"update norm {math.sqrt(total):.3g} exceeds the bound {max_norm:g}")
