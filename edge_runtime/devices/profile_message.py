"""A device profile as it travels to the coordinator (pb.DeviceProfile) and back.

Only what planning needs travels: memory, throughput, bandwidths, backends. The availability
pattern stays on the device (or in the emulator), where it decides whether the device shows up.
"""

from __future__ import annotations

from edge_runtime.devices.profiles import Availability, DeviceProfile
from edge_runtime.protocol import pb

_UNITS = {"fp32": "gflops_fp32", "fp16": "gflops_fp16", "int8": "gflops_int8"}


def profile_to_message(profile: DeviceProfile) -> pb.DeviceProfile:
    return pb.DeviceProfile(
        name=profile.id,
        device_class=profile.kind,
        memory_cap_bytes=profile.memory_cap,
        uplink_mbps=profile.uplink / 1e6,
        downlink_mbps=profile.downlink / 1e6,
        latency_ms=profile.latency * 1e3,
        backends=list(profile.backends),
        precisions=list(profile.precisions),
        memory_bandwidth_gbps=profile.memory_bandwidth / 1e9,
        **{field: profile.throughput.get(key, 0.0) / 1e9 for key, field in _UNITS.items()},
    )


def profile_from_message(message: pb.DeviceProfile) -> DeviceProfile:
    throughput = {key: getattr(message, field) * 1e9 for key, field in _UNITS.items() if getattr(message, field) > 0}
    return DeviceProfile(
        id=message.name,
        name=message.name,
        kind=message.device_class,
        compute_unit="declared by the device",
        total_memory=message.memory_cap_bytes,
        memory_cap=message.memory_cap_bytes,
        memory_bandwidth=message.memory_bandwidth_gbps * 1e9 or float("inf"),
        throughput=throughput,
        uplink=message.uplink_mbps * 1e6 or float("inf"),
        downlink=message.downlink_mbps * 1e6 or float("inf"),
        latency=message.latency_ms / 1e3,
        backends=tuple(message.backends),
        precisions=tuple(p for p in message.precisions if {"bf16": "fp16"}.get(p, p) in throughput) or ("fp32",),
        availability=Availability("always", None, 0.0, 0.0),
        provenance={},
    )
