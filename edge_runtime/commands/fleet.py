"""`edgetune fleet`: emulate a heterogeneous device fleet against a real coordinator."""

from __future__ import annotations

import argparse

from edge_runtime.config import add_config_arguments, config_from_args


def _run(args: argparse.Namespace) -> None:
    from edge_runtime.fleet.config import FleetConfig

    config = config_from_args(FleetConfig, args)  # settings are checked before PyTorch loads (seconds)
    from edge_runtime.fleet.emulator import run_fleet
    from edge_runtime.fleet.report import write_report

    result = run_fleet(config)
    paths = write_report(result, config, config.out_dir)
    print(paths["markdown"].read_text())
    print("report: " + ", ".join(str(p) for p in paths.values()))


def register(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.fleet.config import FleetConfig

    parser = sub.add_parser("fleet", help="emulate a device fleet against a real coordinator (the main job)")
    add_config_arguments(parser, FleetConfig)
    parser.set_defaults(run=_run)
