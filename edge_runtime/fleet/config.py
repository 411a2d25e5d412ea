"""The one config object of a fleet emulation: a coordinator's config plus the fleet around it.

The defaults are the product's main job (`edgetune fleet` with no arguments): eight devices, one of
each shipped profile, Spry rounds over SST-2 on MiniLM, a few minutes on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from coordinator.config import CoordinatorConfig
from edge_runtime.errors import UserError


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class FleetConfig(CoordinatorConfig):
    devices: int = _help("emulated devices", 8)
    profiles: tuple[str, ...] = _help("profile ids (or YAML files) dealt to the devices in turn; empty = every "
                                      "shipped profile", ())
    transport: Literal["grpc", "inprocess"] = _help(
        "grpc: devices talk to a real gRPC coordinator on loopback; inprocess: direct calls (same service code)",
        "grpc")
    backend: Literal["local", "ray"] = _help("local: every device in this process; ray: spread over Ray actors",
                                             "local")
    ray_address: str | None = _help("Ray cluster address; none = start a local Ray", None)
    ray_actors: int = _help("Ray actors, each with one copy of the base model hosting a share of the devices", 2)
    ray_actor_cpus: float = _help("CPUs each Ray actor declares", 1.0)
    threads: int = _help("torch threads per process (or per Ray actor)", 2)
    start_hour: float = _help("virtual time of day the emulation starts at (availability patterns follow it; "
                              "at 00:30 the phones are on their chargers and the office laptop is off)", 0.5)
    out_dir: str = _help("folder for the report (JSON, Markdown, PNG) and the coordinator's state", "runs/fleet")
    # The main job's defaults, where they differ from a standalone coordinator's.
    rounds: int = _help("rounds to run", 8)
    local_steps: int = _help("steps a device takes per round", 5)
    batch_size: int = _help("examples per local step", 8)
    lr: float = _help("device learning rate", 1e-4)
    data: Literal["device", "partition"] = _help("partition: the coordinator deals out a Dirichlet split of the "
                                                 "task's training data to the devices", "partition")
    round_deadline_s: float = _help("virtual seconds a round waits for updates", 300.0)
    device_timeout_s: float = _help("virtual seconds after which a silent device is offline (devices online at "
                                    "a round's start heartbeat then)", 60.0)
    min_devices: int = _help("devices that must be online to open a round", 2)
    max_length: int = _help("tokens per sequence", 64)
    eval_examples: int = _help("evaluation examples scored after each round", 200)
    train_probe_examples: int = _help("training examples the merged adapter's loss is measured on each round", 128)

    def validate(self) -> None:
        if self.devices < 1:
            raise UserError(f"devices must be at least 1, got {self.devices}")
        if self.backend == "ray" and self.transport != "grpc":
            raise UserError("the ray backend reaches the coordinator over gRPC: use --transport grpc")
        if self.ray_actors < 1 or self.threads < 1:
            raise UserError("ray_actors and threads must be at least 1")
        self.partitions = self.devices
        self.state_dir = f"{self.out_dir}/coordinator"
        super().validate()
