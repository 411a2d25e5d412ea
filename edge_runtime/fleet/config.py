"""The one config object of a fleet emulation: a coordinator's config plus the fleet around it.

The defaults are the product's main job (`edgetune fleet` with no arguments): eight devices, one of
each shipped profile, a federated warm start of MiniLM's head on SST-2 (round 0: ridge regression
from the devices' feature statistics), then Spry rounds of forward gradients on the LoRA slices, a
few minutes on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from coordinator.config import CoordinatorConfig
from edge_runtime.config import defaults, require_folder, setting
from edge_runtime.errors import UserError
from edge_runtime.options import Devices, OutDir, Threads


# The main job's defaults, where they differ from a standalone coordinator's. The learning rate was
# measured over 20 rounds after the warm start (`bench federated`, 500 dev examples;
# docs/benchmarks/federated): 1e-2 held the warm start's accuracy for 14 rounds, then diverged (0.540
# by round 19); 3e-3 held it all 20 (0.764, within one standard error). At 3e-3 forward gradients on
# the classifier diverged, so the warm start's head is kept. 500 evaluation examples put one standard
# error at about 2 points, so a gain of 5 is beyond noise. Deadlines and timeouts are virtual seconds
# (the devices online at a round's start heartbeat then).
@dataclass
@defaults(
    rounds=8,
    local_steps=5,
    batch_size=8,
    max_length=64,
    lr=3e-3,
    train_head=False,
    warm_start_examples=256,
    data="partition",
    round_deadline_s=300.0,
    min_devices=2,
    eval_examples=500,
    train_probe_examples=64,
    out_dir="runs/fleet",
)
class FleetConfig(Threads, OutDir, Devices, CoordinatorConfig):
    profiles: tuple[str, ...] = setting(
        "profile ids (or YAML files) dealt to the devices in turn; empty = every shipped profile", ()
    )
    transport: Literal["grpc", "inprocess"] = setting(
        "grpc: devices talk to a real gRPC coordinator on loopback; inprocess: direct calls (same service code)", "grpc"
    )
    # Where the emulated devices run, not the runtime that trains them (an agent's `backend`).
    backend: Literal["local", "ray"] = setting(
        "local: every device in this process; ray: spread over Ray actors", "local"
    )
    ray_address: str | None = setting("Ray cluster address; none = start a local Ray", None)
    ray_actors: int = setting("Ray actors, each with one copy of the base model hosting a share of the devices", 2)
    ray_actor_cpus: float = setting("CPUs each Ray actor declares", 1.0)
    gpu_memory_share: float = setting(
        "device=cuda: the share of GPU memory the emulator may use (the allocator's per-process limit)", 0.9
    )
    batch_devices: int = setting(
        "devices of a host whose forward passes run through the shared base as one batch (torch.vmap over their "
        "adapters; forward-only methods); 0 = auto: 32 on CUDA, 1 (one device at a time) on CPU, whose cores one "
        "device's batch already fills",
        0,
    )
    start_hour: float = setting(
        "virtual time of day the emulation starts at (availability patterns follow it; "
        "at 00:30 the phones are on their chargers and the office laptop is off)",
        0.5,
    )

    def validate(self) -> None:
        if self.devices < 1:
            raise UserError(f"devices must be at least 1, got {self.devices}")
        if self.backend == "ray" and self.transport != "grpc":
            raise UserError("the ray backend reaches the coordinator over gRPC: use --transport grpc")
        if not 0 < self.gpu_memory_share <= 1:
            raise UserError(f"gpu_memory_share must be in (0, 1], got {self.gpu_memory_share}")
        if self.ray_actors < 1 or self.threads < 1:
            raise UserError("ray_actors and threads must be at least 1")
        if self.batch_devices < 0:
            raise UserError(f"batch_devices must be 0 (auto) or more, got {self.batch_devices}")
        if self.batch_devices == 0:
            self.batch_devices = 32 if self.device == "cuda" else 1
        require_folder(self.out_dir, "out_dir")
        from edge_runtime.devices.profiles import find_profile

        for profile in self.profiles:
            find_profile(profile)  # a mistyped profile is refused before PyTorch loads
        self.partitions = self.devices
        self.state_dir = f"{self.out_dir}/coordinator"
        super().validate()
