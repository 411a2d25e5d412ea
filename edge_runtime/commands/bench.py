"""`edgetune bench <what>`: benchmarks that write JSON rows."""

from __future__ import annotations

import argparse

from edge_runtime.config import add_config_arguments, config_from_args


def _memory(args: argparse.Namespace) -> None:
    from edge_runtime.bench import memory
    from edge_runtime.bench.configs import MemoryBenchConfig

    config = config_from_args(MemoryBenchConfig, args)
    rows = memory.run(config)
    print(memory.table(rows))
    print(f"wrote {len(rows)} rows to {config.out}")


def _speed(args: argparse.Namespace) -> None:
    from edge_runtime.bench import speed
    from edge_runtime.bench.configs import SpeedBenchConfig

    config = config_from_args(SpeedBenchConfig, args)
    rows = speed.run(config)
    print(speed.table(rows))
    print(f"wrote {len(rows)} rows to {config.out}")


def _fleet(args: argparse.Namespace) -> None:
    from edge_runtime.bench import fleet

    config = config_from_args(fleet.FleetBenchConfig, args)
    rows = fleet.run(config)
    print(fleet.table(rows))
    print(f"wrote {len(rows)} rows to {config.out}")


def register(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.bench.configs import MemoryBenchConfig, SpeedBenchConfig
    from edge_runtime.bench.fleet import FleetBenchConfig

    bench = sub.add_parser("bench", help="benchmarks (memory, ...) written as JSON")
    kinds = bench.add_subparsers(dest="bench", required=True)
    memory = kinds.add_parser("memory", help="peak memory per method and precision, measured and estimated")
    add_config_arguments(memory, MemoryBenchConfig)
    memory.set_defaults(run=_memory)
    speed = kinds.add_parser("speed", help="time per step of each method beside one forward pass (its floor)")
    add_config_arguments(speed, SpeedBenchConfig)
    speed.set_defaults(run=_speed)
    fleet = kinds.add_parser("fleet", help="memory and device-steps/s of emulated fleets beside one device alone")
    add_config_arguments(fleet, FleetBenchConfig)
    fleet.set_defaults(run=_fleet)
