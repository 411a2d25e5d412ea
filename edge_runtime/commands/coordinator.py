"""`edgetune coordinator`: plan rounds, merge updates, keep the state durable, export the adapter."""

from __future__ import annotations

import argparse
import signal
import threading

from edge_runtime.config import add_config_arguments, config_from_args


def _run(args: argparse.Namespace) -> None:
    from coordinator.config import CoordinatorConfig

    config = config_from_args(CoordinatorConfig, args)  # settings are checked before PyTorch loads (seconds)
    from coordinator.model_host import TorchHost
    from coordinator.rounds import RoundKeeper
    from coordinator.server import CoordinatorServer

    keeper = RoundKeeper(config, TorchHost(config), log=lambda line: print(line, flush=True))
    server = CoordinatorServer(config, keeper).start()
    print(
        f"coordinator: serving on {config.listen} (port {server.port}), {config.planner} planner, "
        f"{keeper.strategy.method_label}, {config.rounds} rounds; state in {config.state_dir}",
        flush=True,
    )
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    waiter = threading.Thread(target=server.wait_finished, daemon=True)
    waiter.start()
    while waiter.is_alive() and not stopped.wait(0.5):
        pass
    server.stop()
    if server.failure is not None:
        raise server.failure
    print("coordinator: finished" if keeper.finished else "coordinator: stopped; restart to resume", flush=True)


def register(sub: argparse._SubParsersAction) -> None:
    from coordinator.config import CoordinatorConfig

    parser = sub.add_parser("coordinator", help="run a federated coordinator (gRPC)")
    add_config_arguments(parser, CoordinatorConfig)
    parser.set_defaults(run=_run)
