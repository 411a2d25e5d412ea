"""The planner interface: given the round's devices, their capacities and the slices, say who
trains what. Planners are pure functions of their inputs (no clock, no randomness beyond the
round number), so a restarted coordinator plans the same round the same way."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from coordinator.slices import Slice
from edge_runtime.protocol import pb

if TYPE_CHECKING:  # capacity loads the memory model (PyTorch); the config reads the planners' names without it
    from coordinator.capacity import Capacity


@dataclass(frozen=True)
class DeviceInfo:
    """A device as a planner sees it: its id, its profile and the training examples it holds."""

    id: str
    profile: pb.DeviceProfile
    examples: int


@dataclass
class Assignment:
    """A planner's answer for one round: each chosen device's slices, why each other device got none, and
    the slices nobody trains."""

    slices: dict[str, list[Slice]] = field(default_factory=dict)  # device id -> its slices
    excluded: dict[str, str] = field(default_factory=dict)  # device id -> why it got nothing
    uncovered: list[str] = field(default_factory=list)  # slice ids nobody trains this round


class RoundPlanner(ABC):
    """Says who trains which slices in a round. A planner is listed in coordinator.planners.PLANNERS by
    `name`; `summary` is its --planner help, `default_method` what its devices train with when the run
    names none, `upload` whether they send tensors or seeds.

    Example, a planner that gives every device every slice, whatever its memory:

        >>> class Everyone(RoundPlanner):
        ...     name, summary, default_method = "everyone", "every device trains every slice", "zo-sgd"
        ...     def assign(self, round_, devices, slices, capacity):
        ...         return Assignment({d.id: list(slices) for d in stable_order(devices)})
        >>> Everyone().assign(0, [DeviceInfo("a", pb.DeviceProfile(), 64)], [Slice("l0", ("w",), 8)], {}).slices
        {'a': [Slice(id='l0', tensors=('w',), numel=8)]}
    """

    name: ClassVar[str]
    summary: ClassVar[str]  # what it plans, in a phrase: the coordinator's --planner help
    default_method: ClassVar[str]
    upload: ClassVar[int] = pb.Task.DENSE  # or pb.Task.SEEDS

    @abstractmethod
    def assign(
        self, round_: int, devices: Sequence[DeviceInfo], slices: Sequence[Slice], capacity: Mapping[str, Capacity]
    ) -> Assignment:
        """Round `round_`'s assignment. `capacity` is each device's under the round's method: the trainable
        bytes it can train at once and the local steps that fit the deadline, or why it cannot take part.
        The same inputs must give the same assignment: a restarted coordinator plans the round again."""


def stable_order(devices: Sequence[DeviceInfo]) -> list[DeviceInfo]:
    """Devices in an order that depends on their ids only: who joins or leaves, or in which order
    they asked for work, moves no other device's place (Spry's published code binds slices to the
    position in the round's sample instead, so a device's slice changes whenever another drops)."""
    return sorted(devices, key=lambda d: hashlib.sha256(d.id.encode()).hexdigest())
