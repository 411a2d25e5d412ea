"""The one config object of a coordinator: defaults < TOML/YAML file < command-line flags."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from coordinator.planners import PLANNERS, Planner
from edge_runtime.config import defaults, require_at_least_one, require_folder, setting
from edge_runtime.errors import UserError
from edge_runtime.options import (
    Device,
    Estimator,
    Evaluation,
    FineTuning,
    Heartbeat,
    JoinSecret,
    LearningRate,
    LocalSteps,
    Method,
    Progress,
    Rounds,
    StateDir,
    TrainProbe,
)


def check_listen_address(listen: str) -> str:
    """The host of a host:port address, refused in one line before anything binds."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(
            f"listen address {listen!r} is not host:port with a port from 1 to 65535 "
            "(e.g. 0.0.0.0:50051; port 0 picks a free one)"
        )
    parts = host.split(".")
    dotted_numbers = all(part.isdigit() for part in parts)
    if dotted_numbers and (len(parts) != 4 or any(int(part) > 255 for part in parts)):
        raise UserError(f"listen host {host!r} is not an IPv4 address")
    if (
        not dotted_numbers
        and not host.startswith("[")
        and not all(part and part.replace("-", "").isalnum() for part in parts)
    ):
        raise UserError(f"listen host {host!r} is neither an IP address nor a host name")
    return host


# A coordinator's own defaults for the groups it shares with one run (method, lr, evaluation).
@dataclass
@defaults(method=None, lr=1e-3, eval_examples=200)
class CoordinatorConfig(
    Progress,
    TrainProbe,
    Evaluation,
    Heartbeat,
    Estimator,
    LearningRate,
    LocalSteps,
    Rounds,
    Method,
    JoinSecret,
    StateDir,
    Device,
    FineTuning,
):
    listen: str = setting("address to serve on, host:port", "127.0.0.1:50051")
    tls_cert: str | None = setting("PEM certificate: serve TLS only (plaintext clients are refused)", None)
    tls_key: str | None = setting("PEM private key of tls_cert", None)
    # How rounds are planned. The estimator's settings (Estimator) are every setting a device's method
    # reads: each task carries them all (its MethodSpec), and the replay of a seeds upload reads the same.
    planner: Planner = setting("; ".join(f"{name}: {p.summary}" for name, p in PLANNERS.items()), "spry")
    min_devices: int = setting("devices that must be online to open a round", 1)
    devices_per_round: int = setting("devices sampled per round; 0 = every available device", 0)
    quorum: float = setting("share of a round's devices whose updates close it at the deadline", 0.5)
    round_deadline_s: float = setting("seconds a round waits for updates before closing with a quorum", 120.0)
    device_timeout_s: float = setting("a device not heard from for this long is offline", 60.0)
    data: Literal["device", "partition"] = setting(
        "device: agents train on their own data; partition: the coordinator deals out a split of the "
        "packaged task data (emulated fleets)",
        "device",
    )
    partitions: int = setting("data=partition: number of parts of the training split", 10)
    dirichlet_alpha: float | None = setting("data=partition: Dirichlet alpha (none = IID)", 1.0)
    # How rounds are merged.
    server_optimizer: Literal["fedavg", "fedadam", "fedyogi"] = setting(
        "server optimizer over the averaged update", "fedavg"
    )
    server_lr: float = setting("server learning rate (1.0 with fedavg = plain averaging)", 1.0)
    server_beta1: float = setting("FedAdam/FedYogi beta1", 0.9)
    server_beta2: float = setting("FedAdam/FedYogi beta2", 0.99)
    server_tau: float = setting("FedAdam/FedYogi adaptivity (epsilon)", 1e-3)
    max_update_norm: float = setting("an update whose L2 norm exceeds this is rejected", 100.0)
    max_message_mb: float = setting("largest message accepted from a device", 4.0)

    def validate(self) -> None:
        require_at_least_one(
            self,
            "rounds",
            "local_steps",
            "batch_size",
            "min_devices",
            "lora_r",
            "max_length",
            "partitions",
            "eval_examples",
            "train_probe_examples",
            "warm_start_examples",
        )
        self.check_lora_shape("lora")
        if self.lr is None:
            raise UserError("lr: a federation's devices need a number (none, the method's default, is one run's)")
        for name in (
            "lr",
            "server_lr",
            "round_deadline_s",
            "device_timeout_s",
            "heartbeat_s",
            "max_update_norm",
            "max_message_mb",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UserError(f"{name} must be a positive number, got {value}")
        self.estimator.validate()
        if not 0 < self.quorum <= 1:
            raise UserError(f"quorum must be in (0, 1], got {self.quorum}")
        if self.devices_per_round < 0:
            raise UserError(f"devices_per_round must not be negative, got {self.devices_per_round}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UserError("tls_cert and tls_key go together: give both or neither")
        require_folder(self.state_dir, "state_dir")
        from edge_runtime.tasks import get_task

        get_task(self.task)  # a mistyped task is refused before PyTorch loads
        host = check_listen_address(self.listen)
        if not self.join_secret and host not in ("127.0.0.1", "localhost", "[::1]"):
            raise UserError(
                f"listening on {self.listen} needs a join_secret: without one any machine that "
                "reaches the port could register devices (loopback alone may run without)"
            )
