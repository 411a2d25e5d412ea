"""The open round: its ledger row, the task each device was given, and which devices have answered."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.ledger import RoundRow
from edge_runtime.protocol import pb


@dataclass
class OpenRound:
    row: RoundRow
    tasks: dict[str, pb.Task]  # device id -> task
    accounted: dict[str, str]  # device id -> submitted | refused

    def view(self) -> RoundView:
        return RoundView(
            self.row.round, self.row.opened_at, self.row.deadline_at, tuple(sorted(self.tasks)), dict(self.accounted)
        )


@dataclass(frozen=True)
class RoundView:
    """What a caller outside the coordinator (the emulator, a bench, a heartbeat reply, a test) may
    read of the open round: a copy, so reading it changes nothing."""

    round: int
    opened_at: float
    deadline_at: float
    devices: tuple[str, ...]  # the devices given a task, sorted
    answered: dict[str, str]  # device id -> submitted | refused

    def submitted(self) -> set[str]:
        return {device for device, status in self.answered.items() if status == "submitted"}
