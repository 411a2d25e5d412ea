"""What one device can do in a round: how many bytes of trainable tensors fit its memory cap and
how many local steps fit the round's deadline, from its declared profile.

Memory comes from the memory model (edge_runtime/memory/model.py) at micro-batch 1, the smallest
a device's own planner can fall back to: the frozen base, all adapters (every device holds the
whole adapter, frozen or not), activations and runtime are fixed; what grows with the slice is the
method's per-element state (ZO's restore snapshot, Forward-Grad's tangents, optimizer moments).
Time is the step's FLOPs over the device's throughput at its precision plus the link time of one
state download and one dense upload.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

from edge_runtime.estimators import get_method
from edge_runtime.memory import Workload, estimate
from edge_runtime.protocol import pb

# The share of the deadline a device may plan to spend; the rest absorbs jitter and stragglers.
DEADLINE_SHARE = 0.8
# Forward passes a step costs, per query: two-point ZO runs two forwards; a jvp costs about three
# (the primal plus the tangent of every matmul); backprop a forward and a backward of twice its cost.
_PASSES = {"forward": 2.0, "jvp": 3.0, "backward": 3.0}


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
    model: str
    method: str
    precision: str
    batch: int
    seq_len: int
    queries: int
    local_steps: int
    deadline_s: float
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ()
    num_labels: int = 2


@functools.lru_cache(maxsize=64)
def _memory(shape: RoundShape) -> tuple[int, float, int, int]:
    """(fixed bytes, per trained element bytes, trainable bytes, base parameters)"""
    est = estimate(Workload(shape.model, shape.method, shape.precision, batch=1, seq_len=shape.seq_len,
                            lora_r=shape.lora_r, lora_alpha=shape.lora_alpha, lora_targets=shape.lora_targets,
                            num_labels=shape.num_labels, nan_guard=False))
    trainable = est.adapters // 4
    fixed = est.weights + est.adapters + est.activations + est.runtime
    per_element = (est.optimizer_state + est.tangents + est.gradients) / max(trainable, 1)
    base_elements = est.weights // {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}[shape.precision]
    return fixed, per_element, est.adapters, base_elements


def step_flops(shape: RoundShape) -> float:
    _, _, _, base = _memory(shape)
    passes = _PASSES[get_method(shape.method).pass_kind] * shape.queries
    return passes * 2.0 * base * shape.batch * shape.seq_len


def device_capacity(profile: pb.DeviceProfile, shape: RoundShape) -> Capacity:
    fixed, per_element, all_trainable, _ = _memory(shape)
    gflops = {"int8": profile.gflops_int8, "fp16": profile.gflops_fp16, "bf16": profile.gflops_fp16}.get(
        shape.precision, 0.0) or profile.gflops_fp32
    if gflops <= 0:
        return Capacity(0, 0, math.inf, "profile declares no compute throughput")
    step_seconds = step_flops(shape) / (gflops * 1e9)
    link = 2 * profile.latency_ms / 1e3
    if profile.downlink_mbps > 0 and profile.uplink_mbps > 0:
        link += all_trainable * 8 / (profile.downlink_mbps * 1e6) + all_trainable * 8 / (profile.uplink_mbps * 1e6)
    steps = min(shape.local_steps, int((shape.deadline_s * DEADLINE_SHARE - link) / step_seconds))
    spare = profile.memory_cap_bytes - fixed
    trainable_bytes = int(spare / per_element * 4) if per_element > 0 else (all_trainable if spare > 0 else 0)
    trainable_bytes = min(trainable_bytes, all_trainable)
    if spare <= 0:
        reason = f"memory cap {profile.memory_cap_bytes / 1e6:.0f} MB < {fixed / 1e6:.0f} MB for the model alone"
        return Capacity(0, max(steps, 0), step_seconds, reason)
    if steps < 1:
        return Capacity(trainable_bytes, 0, step_seconds,
                        f"one step takes {step_seconds:.1f} s, the round deadline is {shape.deadline_s:.0f} s")
    return Capacity(trainable_bytes, steps, step_seconds)


def with_method(shape: RoundShape, method: str) -> RoundShape:
    return replace(shape, method=method)
