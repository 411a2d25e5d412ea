"""`edgetune bench <what>`: benchmarks that write JSON rows (and `bench report`, which reads them)."""

from __future__ import annotations

import argparse
import importlib

from edge_runtime.config import add_config_arguments, config_from_args

# name -> (its config class's name, help). The module edge_runtime.bench.<name> has run(config) -> rows and
# table(rows) -> Markdown; it is imported only when that bench runs, so `edgetune --help` loads no
# torch. The config class is declared beside it, in edge_runtime.bench.<name>_config, torch-free.
BENCHES = {
    "memory": ("MemoryBenchConfig", "peak memory per method and precision, measured and estimated"),
    "speed": ("SpeedBenchConfig", "time per step of each method beside one forward pass (its floor)"),
    "fleet": ("FleetBenchConfig", "memory and device-steps/s of emulated fleets beside one device alone"),
    "convergence": (
        "ConvergenceBenchConfig",
        "loss and accuracy of every method on the same forward-pass budget (ZO-Bench)",
    ),
    "comm": ("CommBenchConfig", "bytes per round per device: Spry slices, FedAvg adapters, ZO seeds and scalars"),
    "warm-start": (
        "WarmStartBenchConfig",
        "accuracy before any training: forward-only heads (zero-shot, centroids, "
        "ridge) and prompt templates with and without calibration",
    ),
    "federated": (
        "FederatedBenchConfig",
        "Spry, FedMeZO, FwdLLM-style and FedAvg on one emulated fleet (identical "
        "devices, always on, so only the method differs): accuracy per round, "
        "rounds to a target, bytes, device memory",
    ),
    "time-to-accuracy": (
        "TimeToAccuracyBenchConfig",
        "minutes to a target accuracy per method under memory caps, here and projected to the shipped device profiles",
    ),
}


def config_class(bench: str) -> type:
    module = importlib.import_module(f"edge_runtime.bench.{bench.replace('-', '_')}_config")
    return getattr(module, BENCHES[bench][0])


def _run(args: argparse.Namespace) -> None:
    config = config_from_args(config_class(args.bench), args)
    module = importlib.import_module(f"edge_runtime.bench.{args.bench.replace('-', '_')}")
    rows = module.run(config)
    print(module.table(rows))
    print(f"wrote {len(rows)} rows to {config.out}" if config.out else f"{len(rows)} rows (out = none: not written)")


def _report(args: argparse.Namespace) -> None:
    from edge_runtime.bench import report

    rendered = report.run(config_from_args(report.ReportConfig, args))
    print(report.table(rendered))
    print(f"wrote {', '.join(dict.fromkeys(r['page'] for r in rendered))}")


def register(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.bench.report import ReportConfig

    bench = sub.add_parser("bench", help="benchmarks (" + ", ".join([*BENCHES, "report"]) + ") written as JSON")
    kinds = bench.add_subparsers(dest="bench", required=True)
    for name, (_, help_text) in BENCHES.items():
        parser = kinds.add_parser(name, help=help_text)
        add_config_arguments(parser, config_class(name))
        parser.set_defaults(run=_run)
    parser = kinds.add_parser(
        "report",
        help="the benchmark pages (docs/benchmarks/<name>/README.md) from their notes "
        "and JSON, or any folder's bench JSON as one page with PNG plots",
    )
    add_config_arguments(parser, ReportConfig)
    # DIR as a positional too; SUPPRESS keeps --folder's value when DIR is left out.
    parser.add_argument("folder", nargs="?", default=argparse.SUPPRESS, metavar="DIR")
    parser.set_defaults(run=_report)
