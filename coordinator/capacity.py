"""What one device can do in a round: how many bytes of trainable tensors fit its memory cap and
how many local steps fit the round's deadline, from its declared profile.

Memory comes from the memory model (edge_runtime/memory/model.py) at micro-batch 1, the smallest
a device's own planner can fall back to: the frozen base, all adapters (every device holds the
whole adapter, frozen or not), activations and runtime are fixed; what grows with the slice is the
method's per-element state (ZO's restore snapshot, Forward-Grad's tangents, optimizer moments).
Time is the cost model's seconds (edge_runtime/costs/timing.py) of the step's counted FLOPs,
plus one state download and one dense upload.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from edge_runtime.costs.flops import step_cost
from edge_runtime.costs.timing import step_seconds, transfer_seconds
from edge_runtime.devices.profile_message import profile_from_message
from edge_runtime.errors import UserError
from edge_runtime.memory import Workload, estimate
from edge_runtime.protocol import pb
from edge_runtime.spec import ONNX_RUNTIME_METHODS, AdapterSpec, MethodSpec

# The share of the deadline a device may plan to spend; the rest absorbs jitter and stragglers.
DEADLINE_SHARE = 0.8


@dataclass(frozen=True)
class Capacity:
    trainable_bytes: int  # bytes of trainable tensors the device can train at once (0: none)
    steps: int  # local steps that fit the deadline (0: none)
    step_seconds: float
    reason: str = ""  # why the device cannot take part, when it cannot

    @property
    def usable(self) -> bool:
        return self.trainable_bytes > 0 and self.steps > 0


@dataclass(frozen=True)
class RoundShape:
    """What every device of a round is asked to do, as far as its capacity depends on it."""

    adapter: AdapterSpec
    method: MethodSpec
    batch_size: int
    local_steps: int
    deadline_s: float

    def workload(self, batch: int) -> Workload:
        return Workload(self.adapter, self.method, batch=batch, seq_len=self.adapter.max_length, nan_guard=False)


@functools.lru_cache(maxsize=64)
def _memory(shape: RoundShape) -> tuple[int, float, int]:
    """(fixed bytes, bytes per trained element, bytes of all trainable tensors)"""
    est = estimate(shape.workload(1))
    trainable = est.adapters // 4
    fixed = est.weights + est.adapters + est.activations + est.runtime
    per_element = (est.optimizer_state + est.tangents + est.gradients) / max(trainable, 1)
    return fixed, per_element, est.adapters


def memory_needed(shape: RoundShape, trainable_bytes: int) -> int:
    """The memory cap at which a device can train `trainable_bytes` of slices under this shape."""
    fixed, per_element, _ = _memory(shape)
    return math.ceil(fixed + trainable_bytes / 4 * per_element)


def prepare(shape: RoundShape) -> None:
    """Compute ahead what every device's capacity shares (the memory model's estimate and the step's
    FLOPs, both cached): about 2 s for tiny-bert on a shared 2-core box, which the first round's
    planning would otherwise spend holding the coordinator's lock while every device's call waits."""
    _memory(shape)
    step_cost(shape.workload(shape.batch_size))


def device_capacity(message: pb.DeviceProfile, shape: RoundShape) -> Capacity:
    method = shape.method.name
    if message.backends and "torch" not in message.backends and method not in ONNX_RUNTIME_METHODS:
        return Capacity(
            0,
            0,
            math.inf,
            f"its backend ({', '.join(message.backends)}) trains with {', '.join(ONNX_RUNTIME_METHODS)}, not {method}",
        )
    profile = profile_from_message(message)
    fixed, per_element, all_trainable = _memory(shape)
    cost = step_cost(shape.workload(shape.batch_size))
    try:
        seconds = step_seconds(profile, cost.flops, shape.adapter.precision, cost.bytes_read)
    except UserError as error:
        return Capacity(0, 0, math.inf, str(error))
    link = transfer_seconds(profile, all_trainable, "down") + transfer_seconds(profile, all_trainable, "up")
    steps = min(shape.local_steps, int((shape.deadline_s * DEADLINE_SHARE - link) / seconds))
    spare = profile.memory_cap - fixed
    if spare <= 0:
        reason = f"memory cap {profile.memory_cap / 1e6:.0f} MB < {fixed / 1e6:.0f} MB for the model alone"
        return Capacity(0, max(steps, 0), seconds, reason)
    trainable_bytes = min(int(spare / per_element * 4) if per_element > 0 else all_trainable, all_trainable)
    if steps < 1:
        return Capacity(
            trainable_bytes,
            0,
            seconds,
            f"one step takes {seconds:.1f} s on this device, the round deadline is {shape.deadline_s:.0f} s",
        )
    return Capacity(trainable_bytes, steps, seconds)
