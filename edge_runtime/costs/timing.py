"""The seconds a device takes for a step and for a transfer, from its profile (the emulator's virtual
clock and the coordinator's capacity plan both read them).

A step takes the longer of its FLOPs over the profile's sustained throughput at the step's
precision and its weight bytes over the memory bandwidth (a roofline: small batches on phones are
bound by reading the weights, training-size batches by the matmuls). A transfer takes the link's
latency plus its bits over the link's bandwidth in that direction.
"""

from __future__ import annotations

from typing import Literal

from edge_runtime.devices.profiles import DeviceProfile

Direction = Literal["up", "down"]


def step_seconds(profile: DeviceProfile, flops: float, precision: str, bytes_read: float = 0) -> float:
    """Seconds of one step on the device: the longer of `flops` at its sustained throughput for `precision`
    and `bytes_read` (the weight bytes its passes read) at its memory bandwidth."""
    return max(flops / profile.flops_per_second(precision), bytes_read / profile.memory_bandwidth)


def transfer_seconds(profile: DeviceProfile, nbytes: float, direction: Direction) -> float:
    """Seconds to move `nbytes` bytes over the device's link in `direction`: one-way latency plus bits over
    that direction's bandwidth."""
    bits_per_second = profile.uplink if direction == "up" else profile.downlink
    return profile.latency + 8 * nbytes / bits_per_second
