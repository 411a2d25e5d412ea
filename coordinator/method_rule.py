"""`method auto` on the coordinator: each device trains its slices with the method that reaches
the target accuracy soonest on it, among those that fit its memory.

The rule is `--method auto`'s on one device (edge_runtime/costs/time_to_target.py), with the step
seconds from the device's declared profile instead of a timed step: a phone that can afford
checkpointed backprop on a slice is not held to ZO because a smaller phone in the fleet is. A
method fits when the device can hold at least the smallest slice under it and take a step before
the deadline. Every candidate uploads dense deltas (backprop's update has no seed to replay), so
the rule goes with the planners that upload dense.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from coordinator.capacity import Capacity, RoundShape, device_capacity, prepare
from edge_runtime.costs import time_to_target
from edge_runtime.protocol import pb

AUTO = "auto"


@dataclass(frozen=True)
class DeviceMethod:
    method: str
    capacity: Capacity  # the device's capacity under that method
    why: str  # one line: the method, and what each other candidate would have cost


def candidate_shapes(shape: RoundShape) -> dict[str, RoundShape]:
    """The round's shape under every candidate method (same adapter, settings, batch and deadline)."""
    shapes = {name: replace(shape, method=replace(shape.method, name=name)) for name in time_to_target.CANDIDATES}
    for candidate in shapes.values():
        prepare(candidate)
    return shapes


def choose(
    profile: pb.DeviceProfile, shapes: Mapping[str, RoundShape], smallest_slice: int, model_kind: str
) -> DeviceMethod:
    """The fitting method with the shortest predicted time to the target; where none fits, the
    candidate with the most room, whose capacity says why the device sits out."""
    capacity = {name: device_capacity(profile, shape) for name, shape in shapes.items()}
    fitting = [name for name, c in capacity.items() if c.usable and c.trainable_bytes >= smallest_slice]
    if not fitting:
        roomiest = max(capacity, key=lambda name: (capacity[name].steps > 0, capacity[name].trainable_bytes))
        return DeviceMethod(roomiest, capacity[roomiest], f"no method fits: {capacity[roomiest].reason}")
    ranked = sorted(fitting, key=lambda name: time_to_target.rank(name, capacity[name].step_seconds, model_kind))
    refused = [f"{name}: does not fit" for name in capacity if name not in fitting]
    why = "; ".join(
        [f"{name}: {time_to_target.describe(name, capacity[name].step_seconds, model_kind)}" for name in ranked]
        + refused
    )
    return DeviceMethod(ranked[0], capacity[ranked[0]], why)
