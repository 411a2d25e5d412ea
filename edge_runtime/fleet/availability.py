"""When an emulated device is online, and whether it drops out of a round, from its profile.

Patterns repeat every virtual day. Each device shifts its profile's window by its own uniform draw
in +-jitter (a fleet of phones does not come online on the same second); drop-outs are drawn per
round. Every draw comes from a generator the caller seeds, so an emulation replays exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_runtime.devices.profiles import Availability

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class DeviceAvailability:
    availability: Availability
    shift: float  # seconds this device's window is moved by

    @classmethod
    def draw(cls, availability: Availability, rng: np.random.Generator) -> DeviceAvailability:
        jitter = availability.jitter_minutes * 60
        return cls(availability, float(rng.uniform(-jitter, jitter)) if jitter else 0.0)

    def seconds_left(self, t: float) -> float:
        """Virtual seconds from ``t`` until the device goes offline: 0 when it is offline, inf when never."""
        if self.availability.window is None:
            return math.inf
        start, end = self.availability.window
        length = (end - start) % (24 * 60) * 60
        into = (t - start * 60 - self.shift) % SECONDS_PER_DAY
        return length - into if into < length else 0.0

    def is_online(self, t: float) -> bool:
        return self.seconds_left(t) > 0

    def drops_out(self, rng: np.random.Generator) -> bool:
        """Whether this device, given a round, leaves it before reporting."""
        return bool(rng.random() < self.availability.dropout_probability)
