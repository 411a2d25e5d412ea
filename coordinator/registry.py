"""Which registered devices are online, and which of them a round samples.

A device is online for one device timeout after it was last heard from (a GetTask, a heartbeat or
an update). The registry keeps that in memory only: the ledger keeps who registered, and after a
restart the coordinator's own silence must not count against the devices (see `trust_known`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from coordinator.ledger import Ledger
from coordinator.planners import DeviceInfo
from edge_runtime.protocol import pb


class DeviceRegistry:
    """Which registered devices are online (heard from within `timeout_s` seconds by `clock`) and which of
    them a round samples. Liveness is kept in memory; registrations are the ledger's."""

    def __init__(self, ledger: Ledger, clock: Callable[[], float], timeout_s: float) -> None:
        self.ledger, self.clock, self.timeout_s = ledger, clock, timeout_s
        self.last_seen: dict[str, float] = {}

    def seen(self, device_id: str) -> None:
        """`device_id` was heard from now."""
        self.last_seen[device_id] = self.clock()

    def trust_known(self) -> None:
        """After a restart, every registered device counts as online for one timeout. Otherwise the
        first device to call back would find itself the only one online, and the next round would be
        planned for it alone."""
        self.last_seen = {row.id: self.clock() for row in self.ledger.devices()}

    def online_count(self) -> int:
        """How many devices are online now."""
        # From memory: every GetTask asks, and reading every device's row on each call while a fleet
        # is still arriving would cost each call time in proportion to the fleet.
        return len(self._online_ids())

    def online(self) -> list[DeviceInfo]:
        """The online devices as the planners see them, in id order."""
        online = self._online_ids()
        return [
            DeviceInfo(row.id, pb.DeviceProfile.FromString(row.profile), row.examples)
            for row in self.ledger.devices()
            if row.id in online
        ]

    @staticmethod
    def sample(devices: list[DeviceInfo], count: int, seed: int) -> list[DeviceInfo]:
        """`count` of the devices (all when count is 0 or covers them), the same for the same seed."""
        if not count or len(devices) <= count:
            return devices
        return random.Random(seed).sample(sorted(devices, key=lambda d: d.id), count)

    def _online_ids(self) -> set[str]:
        now = self.clock()
        return {device for device, seen in self.last_seen.items() if now - seen <= self.timeout_s}
