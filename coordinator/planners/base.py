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
    id: str
    profile: pb.DeviceProfile
    examples: int


@dataclass
class Assignment:
    slices: dict[str, list[Slice]] = field(default_factory=dict)  # device id -> its slices
    excluded: dict[str, str] = field(default_factory=dict)  # device id -> why it got nothing
    uncovered: list[str] = field(default_factory=list)  # slice ids nobody trains this round


class RoundPlanner(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]  # what it plans, in a phrase: the coordinator's --planner help
    default_method: ClassVar[str]
    upload: ClassVar[int] = pb.Task.DENSE  # or pb.Task.SEEDS

    @abstractmethod
    def assign(self, round_: int, devices: Sequence[DeviceInfo], slices: Sequence[Slice],
               capacity: Mapping[str, Capacity]) -> Assignment: ...


def stable_order(devices: Sequence[DeviceInfo]) -> list[DeviceInfo]:
    """Devices in an order that depends on their ids only: who joins or leaves, or in which order
    they asked for work, moves no other device's place (Spry's published code binds slices to the
    position in the round's sample instead, so a device's slice changes whenever another drops)."""
    return sorted(devices, key=lambda d: hashlib.sha256(d.id.encode()).hexdigest())
