"""`edgetune bench comm`: bytes per round per device for Spry, FedAvg and ZO seed-and-scalar uploads.

Two kinds of rows. Measured: a real federation in one process (the coordinator's service and
agents over the in-process transport, the same code as gRPC minus sockets) runs one round per
planner, and the coordinator's own counters give the bytes each device uploaded (protocol headers
included) and downloaded. Computed: the payloads from the adapter's shapes alone (fp32 tensors,
4-byte scalars, no headers), for the federation's model beside its measurement and for the models
the papers' claims are about:

- FedAvg: every device uploads the whole adapter;
- Spry: a device uploads only its slices (one LoRA A/B pair each); with every slice trained once
  a round, that is adapter / min(slices, devices) per device on average;
- ZO seed-and-scalar (FedKSeed): a device uploads one 4-byte scalar per step and query; the
  coordinator regenerates the directions from the seeds it chose.

Every device downloads the merged adapter in all three.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict

import torch
from tqdm import tqdm

from coordinator.config import CoordinatorConfig
from coordinator.model_host import TorchHost
from coordinator.rounds import RoundKeeper
from coordinator.service import CoordinatorService
from coordinator.slices import slice_tensors
from edge_runtime.agent.agent import Agent, DataSource
from edge_runtime.agent.client import InProcessClient
from edge_runtime.bench.comm_config import CommBenchConfig
from edge_runtime.bench.results import write_results
from edge_runtime.config import build_config
from edge_runtime.errors import UserError
from edge_runtime.local.torch_model import TorchModel
from edge_runtime.memory.model import Workload, meta_model
from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import adapter_of
from edge_runtime.spec import AdapterSpec
from edge_runtime.units import format_bytes


def run(config: CommBenchConfig) -> list[dict]:
    config.validate()
    torch.set_num_threads(config.threads)
    rows = []
    for planner in tqdm(config.planners, desc=f"bench comm ({config.model} federations)", disable=not config.progress):
        rows.append(measured_row(config, planner))
    for model in dict.fromkeys((config.model, *config.shape_models)):
        rows += [computed_row(config, model, planner) for planner in config.planners]
    for row in rows:  # each measured row beside the payload the shapes predict for it
        if row["source"] == "measured":
            payload = next(
                r
                for r in rows
                if r["source"] == "computed" and r["model"] == row["model"] and r["planner"] == row["planner"]
            )
            row["over_payload"] = row["up_bytes_per_device"] / payload["up_bytes_per_device"]
    write_results("comm", config, rows, table)
    return rows


def adapter_shapes(model: str, lora_r: int) -> dict[str, tuple[int, ...]]:
    net = meta_model(Workload(AdapterSpec(model, lora_r=lora_r, lora_alpha=2 * lora_r)))
    return {name: tuple(p.shape) for name, p in net.named_parameters() if p.requires_grad}


def computed_row(config: CommBenchConfig, model: str, planner: str) -> dict:
    shapes = adapter_shapes(model, config.lora_r)
    slices = slice_tensors(shapes)
    adapter = sum(s.nbytes for s in slices)
    if planner == "fedavg-full":
        up = adapter
    elif planner == "spry":
        up = adapter / min(len(slices), config.devices)
    else:
        up = 4 * config.local_steps * config.estimator.queries
    return {
        "source": "computed",
        "model": model,
        "planner": planner,
        "devices": config.devices,
        "local_steps": config.local_steps,
        "queries": config.estimator.queries,
        "slices": len(slices),
        "adapter_bytes": adapter,
        "up_bytes_per_device": up,
        "down_bytes_per_device": adapter,
    }


def measured_row(config: CommBenchConfig, planner: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgetune-comm-") as state_dir:
        round_ = _one_round(config, planner, state_dir)
    if round_["updates"] != config.devices:
        raise UserError(f"{planner}: only {round_['updates']} of {config.devices} devices sent an update")
    return {
        "source": "measured",
        "model": config.model,
        "planner": planner,
        "method": round_["method"],
        "devices": config.devices,
        "local_steps": config.local_steps,
        "queries": config.estimator.queries,
        "slices": round_["slices_total"],
        "up_bytes_per_device": round_["bytes_up_per_update"],
        "down_bytes_per_device": round_["bytes_down"] / config.devices,
        "device_loss_before": round_["device_loss_before"],
        "device_loss_after": round_["device_loss_after"],
    }


def _one_round(config: CommBenchConfig, planner: str, state_dir: str) -> dict:
    """One round of a real coordinator with `config.devices` agents, all in this process."""
    coordinator = build_config(
        CoordinatorConfig,
        {
            "state_dir": state_dir,
            "model": config.model,
            "task": "sst2",
            "planner": planner,
            "rounds": 1,
            "local_steps": config.local_steps,
            **asdict(config.estimator),
            "batch_size": config.batch_size,
            "lora_r": config.lora_r,
            "lora_alpha": 2 * config.lora_r,
            "max_length": config.max_length,
            "data": "partition",
            "partitions": config.devices,
            "dirichlet_alpha": None,
            "eval_examples": 16,
            # A training round's bytes: the warm start's statistics round is a one-off before training.
            "warm_start": "none",
            "calibration": "none",
            "train_probe_examples": 16,
            "progress": False,
        },
    )
    keeper = RoundKeeper(coordinator, TorchHost(coordinator), log=lambda _: None)
    service = CoordinatorService(keeper)
    laptop = pb.DeviceProfile(
        name="laptop",
        device_class="laptop",
        memory_cap_bytes=8 * 10**9,
        gflops_fp32=200,
        uplink_mbps=20,
        downlink_mbps=100,
        latency_ms=20,
        precisions=["fp32"],
    )
    backends: dict[AdapterSpec, TorchModel] = {}

    def backend_for(task: pb.Task) -> TorchModel:
        spec = adapter_of(task)
        if spec not in backends:  # one model per process, shared by the agents like the fleet's hosts
            backends[spec] = TorchModel(spec)
        return backends[spec]

    agents = [
        Agent(InProcessClient(service), laptop, DataSource(), backend_for, log=lambda _: None)
        for _ in range(config.devices)
    ]
    for agent in agents:
        agent.join()
    while not keeper.finished:
        for agent in agents:
            agent.work_once()
        keeper.tick()
    return keeper.round_metrics()[1]


def table(rows: list[dict]) -> str:
    lines = [
        "| model | planner | source | devices | local steps | up per device per round | down per device "
        "per round | up vs FedAvg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fedavg = {(r["model"], r["source"]): r["up_bytes_per_device"] for r in rows if r["planner"] == "fedavg-full"}
    for r in rows:
        reference = fedavg.get((r["model"], r["source"]))
        versus = f"{r['up_bytes_per_device'] / reference:.2g}x" if reference else ""
        lines.append(
            f"| {r['model']} | {r['planner']} | {r['source']} | {r['devices']} | {r['local_steps']} | "
            f"{format_bytes(r['up_bytes_per_device'])} | {format_bytes(r['down_bytes_per_device'])} | "
            f"{versus} |"
        )
    return "\n".join(lines)
