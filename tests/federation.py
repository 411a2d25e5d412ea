"""A coordinator and agents in one process (the in-process transport), for the federated tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from coordinator.auth import new_identity
from coordinator.config import CoordinatorConfig
from coordinator.model_host import TorchHost
from coordinator.rounds import RoundKeeper
from coordinator.service import CoordinatorService
from edge_runtime.agent.agent import Agent, DataSource
from edge_runtime.agent.client import InProcessClient
from edge_runtime.local.torch_model import TorchModel
from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import adapter_message, adapter_of, method_message
from edge_runtime.spec import AdapterSpec, MethodSpec

SMALL_DATA = str(Path(__file__).parent / "data" / "sst2-small")
LAPTOP = pb.DeviceProfile(
    name="laptop",
    device_class="laptop",
    memory_cap_bytes=8 * 10**9,
    gflops_fp32=200,
    uplink_mbps=20,
    downlink_mbps=100,
    latency_ms=20,
    precisions=["fp32"],
)


def wire_task(adapter: AdapterSpec, method: MethodSpec = MethodSpec(), **fields) -> pb.Task:
    """A task as a coordinator writes one, for tests that hand a device its work directly."""
    return pb.Task(adapter=adapter_message(adapter), method=method_message(method), **fields)


def small_config(tmp_path, **overrides) -> CoordinatorConfig:
    """Rounds of training from the initial adapter; the warm start's own round has its tests."""
    config = CoordinatorConfig(
        state_dir=str(tmp_path / "coordinator"),
        model="tiny-bert",
        task="sst2",
        rounds=3,
        warm_start="none",
        local_steps=5,
        batch_size=8,
        lr=1e-2,
        data="partition",
        partitions=4,
        dirichlet_alpha=None,
        data_dir=SMALL_DATA,
        eval_examples=32,
        train_probe_examples=128,
        max_length=64,
        progress=False,
    )
    config = replace(config, **overrides)
    config.validate()
    return config


class Federation:
    def __init__(
        self,
        config: CoordinatorConfig,
        devices: int = 4,
        profile: pb.DeviceProfile = LAPTOP,
        host: TorchHost | None = None,
        clock: Callable[[], float] = time.time,
        identities: Callable[[], tuple[str, str]] = new_identity,
    ) -> None:
        self.config = config
        self.host = host or TorchHost(config)
        self.keeper = RoundKeeper(config, self.host, clock=clock, log=lambda _: None)
        self.service = CoordinatorService(self.keeper, identities)
        self.models: dict[AdapterSpec, TorchModel] = {}
        self.agents = [self.agent(profile) for _ in range(devices)]

    def backend_for(self, task: pb.Task) -> TorchModel:
        spec = adapter_of(task)
        if spec not in self.models:
            self.models[spec] = TorchModel(spec)
        return self.models[spec]

    def agent(self, profile: pb.DeviceProfile = LAPTOP) -> Agent:
        agent = Agent(
            InProcessClient(self.service), profile, DataSource(SMALL_DATA), self.backend_for, log=lambda _: None
        )
        agent.join()
        return agent

    def run(self, max_passes: int = 1000) -> list[dict]:
        for _ in range(max_passes):
            if self.keeper.finished:
                break
            for agent in self.agents:
                agent.work_once()
            self.keeper.tick()
        return self.keeper.round_metrics()
