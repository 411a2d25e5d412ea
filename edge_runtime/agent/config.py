"""The one config object of a device agent (`edgetune agent`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_runtime.config import defaults, setting
from edge_runtime.devices.profiles import BACKENDS
from edge_runtime.errors import UserError
from edge_runtime.options import DataDir, Device, JoinSecret, Profile, StateDir, Threads


@dataclass
@defaults(state_dir="runs/agent")
class AgentConfig(Threads, Device, StateDir, JoinSecret, DataDir, Profile):
    coordinator: str = setting("the coordinator's host:port", "127.0.0.1:50051")
    partition: str | None = setting(
        "train on one part of the data, task:index/parts:alpha:seed (e.g. sst2:3/10:1.0:0); none = all of it", None
    )
    # Not the Task group's: a device need not say which task its data is for, where every other command names one.
    task: str | None = setting("task this device has data for (declares its example count); none = unknown", None)
    tls_root_cert: str | None = setting("PEM root certificate: connect over TLS, trusting it", None)
    backend: Literal[BACKENDS] = setting(
        "runtime that trains on this device; onnxruntime needs no PyTorch, only --graph", "torch"
    )
    graph: str | None = setting(
        "folder written by `edgetune export-graph` (model.onnx, manifest, tokenizer): the "
        "model of --backend onnxruntime",
        None,
    )

    def validate(self) -> None:
        if ":" not in self.coordinator:
            raise UserError(f"coordinator must be host:port, got {self.coordinator!r}")
        if self.backend == "onnxruntime" and not self.graph:
            raise UserError(
                "--backend onnxruntime trains an exported graph: give its folder with --graph "
                "(write one with `edgetune export-graph MODEL --out DIR`)"
            )
        if self.threads < 1:
            raise UserError(f"threads must be at least 1, got {self.threads}")
