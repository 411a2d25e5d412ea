"""`edgetune agent`: join a coordinator and train what it assigns, until its rounds are done."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from edge_runtime.config import add_config_arguments, config_from_args


def _torch_backends(config):
    """backend_for(task): one model per model spec, loaded on the first task that needs it (PyTorch
    too: joining, and a refusal to join, take no seconds of importing it)."""
    models = {}

    def backend_for(task):
        import torch

        from edge_runtime.local.torch_model import TorchModel
        from edge_runtime.protocol.specs import adapter_of

        torch.set_num_threads(config.threads)
        spec = adapter_of(task)
        if spec not in models:
            models.clear()  # one model in memory at a time
            models[spec] = TorchModel(spec, device=config.device)
        return models[spec]

    return backend_for


def _ort_backends(config):
    """backend_for(task): the one exported graph, for the tasks it fits (others are refused)."""
    from edge_runtime.agent.ort_backend import OrtModel

    model = OrtModel(config.graph, threads=config.threads)

    def backend_for(task):
        model.check(task)
        return model

    return backend_for


def _run(args: argparse.Namespace) -> None:
    from edge_runtime.agent.agent import Agent, DataSource
    from edge_runtime.agent.client import CallRejected, GrpcClient
    from edge_runtime.agent.config import AgentConfig
    from edge_runtime.devices.profile_message import profile_to_message
    from edge_runtime.devices.profiles import find_profile
    from edge_runtime.errors import UserError
    from edge_runtime.tasks.partition import Partition

    config = config_from_args(AgentConfig, args)
    backend_for = _ort_backends(config) if config.backend == "onnxruntime" else _torch_backends(config)
    profile = find_profile(config.profile)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    root = Path(config.tls_root_cert).read_bytes() if config.tls_root_cert else None
    client = GrpcClient(config.coordinator, root_cert=root, stop=stop)
    data = DataSource(config.data_dir, Partition.parse(config.partition) if config.partition else None)
    message = profile_to_message(profile)
    message.backends[:] = [config.backend]  # what this agent runs, so the coordinator plans only what it can do
    agent = Agent(
        client,
        message,
        data,
        backend_for,
        join_secret=config.join_secret,
        state_dir=Path(config.state_dir),
        task_name=config.task,
    )
    try:
        device_id = agent.join(config.coordinator)
        print(
            f"agent: joined {config.coordinator} as {device_id} ({profile.name}, cap "
            f"{profile.memory_cap / 1e9:.1f} GB)",
            flush=True,
        )
        agent.run(stop)
    except CallRejected as refusal:
        if stop.is_set():
            print(f"agent: stopped while waiting for {config.coordinator}; nothing was in flight", flush=True)
            return
        raise UserError(f"the coordinator at {config.coordinator} refused this device: {refusal.message}") from None
    finally:
        client.close()


def register(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.agent.config import AgentConfig

    parser = sub.add_parser("agent", help="join a coordinator and train what it assigns")
    add_config_arguments(parser, AgentConfig)
    parser.set_defaults(run=_run)
