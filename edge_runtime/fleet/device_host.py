"""Many emulated devices in one process, around one copy of the base model.

A host runs the real agent code for each device (registration, tasks, state download, training,
upload) over a transport it is given, and times it all on each device's virtual clock: download and
upload by bytes over the profile's link, training by the counted FLOPs of every step over the
profile's throughput. What differs between devices is only what a device owns: its profile, its
agent (identity, last state), its availability draw and its memory accounting. The fleet emulator
drives hosts in virtual-time order; the same host class runs in this process or as a Ray actor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from edge_runtime.agent.agent import Agent, DataSource, Prepared
from edge_runtime.agent.client import CoordinatorClient
from edge_runtime.costs.flops import pass_flops, step_cost, weight_bytes
from edge_runtime.costs.timing import step_seconds, transfer_seconds
from edge_runtime.devices.profile_message import profile_to_message
from edge_runtime.devices.profiles import DeviceProfile, find_profile
from edge_runtime.estimators import get_method
from edge_runtime.fleet.accounting import AccountedModel, workload_of
from edge_runtime.fleet.availability import DeviceAvailability
from edge_runtime.fleet.batched_forward import CPU_WIDTH_STEP, BatchedForward, LockstepModel
from edge_runtime.fleet.lockstep import Lockstep
from edge_runtime.local.torch_model import STATISTICS_BATCH, TorchModel
from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import adapter_of, method_of
from edge_runtime.spec import AdapterSpec

# Padded lengths are rounded up to this many tokens before FLOPs are counted (bounds the cache).
_LENGTH_STEP = 16
_HEADER_BYTES = 64


@dataclass
class PreparedWork:
    """What the emulator needs to know about one device's round, without the tensors."""

    device_id: str
    kind: str  # task | refused | wait | done | offline | dropped
    ready_at: float = 0.0  # virtual time the device's answer reaches the coordinator
    train_seconds: float = 0.0
    link_seconds: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    steps: int = 0


@dataclass
class EmulatedDevice:
    index: int
    profile: DeviceProfile
    agent: Agent
    availability: DeviceAvailability
    peaks: list[int] = field(default_factory=list)
    pending: Prepared | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    virtual_busy_s: float = 0.0

    @property
    def device_id(self) -> str:
        return self.agent.client.device_id


def _seeded(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, *parts])


class DeviceHost:
    def __init__(
        self,
        client_factory: Callable[[], CoordinatorClient],
        data_dir: str | None,
        seed: int,
        threads: int | None = None,
        shared: TorchModel | None = None,
        device: str = "cpu",
        gpu_memory_share: float = 1.0,
        batch_devices: int = 1,
    ) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        if device == "cuda" and torch.cuda.is_available():  # else the shared model refuses to load, saying why
            torch.cuda.set_per_process_memory_fraction(gpu_memory_share)
        self.device, self.gpu_memory_share = device, gpu_memory_share
        self.batched = (
            BatchedForward(batch_devices, self._free_bytes, None if device == "cuda" else CPU_WIDTH_STEP)
            if batch_devices > 1
            else None
        )
        self.client_factory, self.data_dir, self.seed = client_factory, data_dir, seed
        self.models: dict[AdapterSpec, TorchModel] = {shared.spec: shared} if shared is not None else {}
        self.devices: dict[str, EmulatedDevice] = {}

    def _model(self, task: pb.Task) -> TorchModel:
        spec = adapter_of(task)
        if spec not in self.models:
            self.models[spec] = TorchModel(spec, device=self.device)
        return self.models[spec]

    def _backend(self, task: pb.Task) -> TorchModel | LockstepModel:
        model = self._model(task)
        statistics = task.work == pb.Task.STATISTICS  # no adapter trains: passes through the shared model
        if Lockstep.active() is not None and get_method(method_of(task).name).forward_only and not statistics:
            return LockstepModel(model)
        return model

    def _free_bytes(self) -> int:
        """What a batch of devices' activations may take: the GPU share left, or half the free RAM."""
        import psutil
        import torch

        if self.device == "cuda":
            total = torch.cuda.get_device_properties(0).total_memory
            return int(total * self.gpu_memory_share) - torch.cuda.memory_allocated()
        return psutil.virtual_memory().available // 2

    def add(self, index: int, profile: str) -> str:
        """Create and register device `index`; returns its id. Call in a fixed order: ids are seeded."""
        chosen = find_profile(profile)
        peaks: list[int] = []
        agent = Agent(
            self.client_factory(),
            profile_to_message(chosen),
            DataSource(self.data_dir),
            lambda task: AccountedModel(self._backend(task), chosen.memory_cap, peaks),
            log=lambda _: None,
        )
        agent.join()
        device = EmulatedDevice(
            index, chosen, agent, DeviceAvailability.draw(chosen.availability, _seeded(self.seed, index)), peaks
        )
        self.devices[device.device_id] = device
        return device.device_id

    def heartbeat(self, now: float) -> list[str]:
        """Devices online at virtual time `now` tell the coordinator so; the others stay silent."""
        online = []
        for device_id, device in self.devices.items():
            if device.availability.is_online(now):
                device.agent.client.heartbeat()
                online.append(device_id)
        return online

    def prepare(self, device_ids: list[str], now: float, round_: int) -> list[PreparedWork]:
        """Each device asks for its task and trains; nothing is delivered yet. With batching, the
        devices train in lockstep, a group at a time, their forward passes served together."""
        jobs = [partial(self._prepare, self.devices[d], now, round_) for d in device_ids]
        if self.batched is None:
            return [job() for job in jobs]
        size = self.batched.max_devices
        return [work for i in range(0, len(jobs), size) for work in Lockstep(self.batched).run(jobs[i : i + size])]

    def _prepare(self, device: EmulatedDevice, now: float, round_: int) -> PreparedWork:
        if not device.availability.is_online(now):
            return PreparedWork(device.device_id, "offline")
        if device.availability.drops_out(_seeded(self.seed, device.index, round_, 1)):
            return PreparedWork(device.device_id, "dropped")
        had_version = device.agent.state_version
        prepared = device.agent.prepare()
        work = PreparedWork(device.device_id, prepared.kind)
        if prepared.task is None:
            return work
        if device.agent.state_version != had_version:
            work.bytes_down = sum(v.nbytes for v in device.agent.state.values())
        result = prepared.result
        if prepared.kind == "task":
            task = prepared.task
            work.steps = result.steps
            statistics = task.work == pb.Task.STATISTICS
            seconds = self._forward_seconds if statistics else self._step_seconds
            work.train_seconds = sum(seconds(device.profile, task, length) for length in result.seq_lens)
            work.bytes_up = _HEADER_BYTES + (
                4 * len(result.scalars)
                if task.upload == pb.Task.SEEDS and not statistics
                else sum(v.nbytes for v in result.deltas.values())
            )
        work.link_seconds = (
            transfer_seconds(device.profile, work.bytes_down, "down") if work.bytes_down else 0.0
        ) + transfer_seconds(device.profile, work.bytes_up or _HEADER_BYTES, "up")
        work.ready_at = now + work.train_seconds + work.link_seconds
        device.virtual_busy_s += work.train_seconds + work.link_seconds
        device.pending = prepared
        return work

    @staticmethod
    def _step_seconds(profile: DeviceProfile, task: pb.Task, length: int) -> float:
        padded = -(-length // _LENGTH_STEP) * _LENGTH_STEP
        work = workload_of(task, task.batch_size)
        cost = step_cost(replace(work, seq_len=padded))
        # PyTorch's int8 path stores int8 but multiplies in fp32, so it runs at fp32 speed.
        precision = "fp32" if work.adapter.precision == "int8" else work.adapter.precision
        return step_seconds(profile, cost.flops, precision, cost.bytes_read)

    @staticmethod
    def _forward_seconds(profile: DeviceProfile, task: pb.Task, length: int) -> float:
        """One forward pass of a statistics batch (the agent reads its examples 32 at a time)."""
        padded = -(-length // _LENGTH_STEP) * _LENGTH_STEP
        work = replace(workload_of(task, STATISTICS_BATCH), seq_len=padded)
        precision = "fp32" if work.adapter.precision == "int8" else work.adapter.precision
        return step_seconds(profile, pass_flops(work, "forward"), precision, weight_bytes(work))

    def deliver(self, device_id: str) -> str:
        device = self.devices[device_id]
        prepared, device.pending = device.pending, None
        outcome = device.agent.deliver(prepared)
        device.outcomes[outcome] = device.outcomes.get(outcome, 0) + 1
        return outcome

    def report(self) -> list[dict]:
        return [
            {
                "device_id": d.device_id,
                "index": d.index,
                "profile": d.profile.id,
                "kind": d.profile.kind,
                "memory_cap": d.profile.memory_cap,
                "accounted_peak": max(d.peaks, default=0),
                "tasks_measured": len(d.peaks),
                "outcomes": dict(d.outcomes),
                "virtual_busy_s": d.virtual_busy_s,
            }
            for d in sorted(self.devices.values(), key=lambda d: d.index)
        ]

    def batching(self) -> dict:
        """How the forward passes were batched: passes run and the device passes they carried."""
        if self.batched is None:
            return {"passes": 0, "device_passes": 0}
        return {
            "passes": self.batched.stats.passes,
            "device_passes": self.batched.stats.device_passes,
            "unbatchable": self.batched.unbatchable,
        }

    def resident_bytes(self) -> int:
        import psutil

        return psutil.Process().memory_info().rss
