"""`edgetune bench fleet`: what an emulated device costs the process that hosts it.

For each model and fleet size, one fresh process runs one round of the fleet emulator (in-process
transport, one host): resident memory after the devices joined and at the end, and device-steps per
second of the round's training phase. Beside them, in the same way, one device running the same
total number of steps alone: the emulator's overhead per device is the ratio of the two. With
`--repeats N` every row runs N times, round-robin over the sizes, and the median run is reported. Memory
per device is the slope of resident memory over fleet size, to be read against one device's
adapter state (every emulated device keeps its own copy of the global adapter, nothing else).
With `--batch-devices 1,8` every fleet also runs with its devices' forward passes batched 8 at a
time (fleet/batched_forward.py), and the ratio of its throughput to the unbatched run is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from edge_runtime.bench.fleet_config import FleetBenchConfig
from edge_runtime.bench.results import write_json
from edge_runtime.errors import UserError
from edge_runtime.units import format_bytes

PROBE = """
import json, sys
from edge_runtime.config import build_config
from edge_runtime.fleet.config import FleetConfig
from edge_runtime.fleet.emulator import FleetEmulator

row = json.loads(sys.argv[1])
config = build_config(FleetConfig, {
    "model": row["model"], "devices": row["devices"], "profiles": ("jetson-agx-orin-64gb",), "rounds": 1,
    "local_steps": row["steps"], "batch_size": row["batch_size"], "max_length": row["max_length"],
    "planner": "fedavg-full", "method": row["method"],
    "lr": 1e-4, "warm_start": "none", "calibration": "none", "transport": "inprocess", "threads": row["threads"],
    "out_dir": row["out_dir"],
    "batch_devices": row["batch_devices"], "device": row["device"],
    "eval_examples": 8, "train_probe_examples": 8, "round_deadline_s": 1e9, "quorum": 1.0, "min_devices": 1,
    "progress": False})
emulator = FleetEmulator(config, log=lambda _: None)
import psutil
process = psutil.Process()
before = process.memory_info().rss
result = emulator.run()
emulator.close()
record = result.rounds[0]
print(json.dumps({"rss_before_devices": before, "rss_after": process.memory_info().rss,
                  "peak_rss": result.peak_rss_bytes, "device_steps": record["device_steps"],
                  "train_wall_s": record["prepare_wall_s"], "round_wall_s": record["wall_s"],
                  "adapter_bytes": emulator.keeper.adapter_bytes(),
                  "devices_per_pass": result.batching["device_passes"] / max(result.batching["passes"], 1)}))
"""


def _row(model: str, devices: int, batch_devices: int, config: FleetBenchConfig, folder: Path) -> dict:
    row = {
        "model": model,
        "devices": devices,
        "batch_devices": batch_devices,
        "steps": config.total_steps // devices,
        "batch_size": config.batch_size,
        "max_length": config.max_length,
        "method": config.method,
        "threads": config.threads,
        "device": config.device,
        "out_dir": str(folder / f"{model}-{devices}"),
    }
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(row)], capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"fleet bench row {model} x {devices} failed: {done.stderr.strip().splitlines()[-1]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    measured["device_steps_per_s"] = measured["device_steps"] / measured["train_wall_s"]
    del row["out_dir"]
    return {**row, **measured}


def run(config: FleetBenchConfig) -> list[dict]:
    config.validate()
    # The emulations' own state (ledger, checkpoints) is scratch: only the measured rows are kept.
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as scratch:
        return _measure(config, Path(scratch))


def _measure(config: FleetBenchConfig, folder: Path) -> list[dict]:
    rows = []
    keys = [(1, 1), *((devices, b) for b in config.batch_devices for devices in config.sizes)]
    with tqdm(
        total=len(config.models) * len(keys) * config.repeats, desc="bench fleet", disable=not config.progress
    ) as bar:
        for model in config.models:
            # Repeats go round-robin over the rows, so a busy spell of the machine hits every row alike.
            runs: dict[tuple[int, int], list[dict]] = {key: [] for key in keys}
            for _ in range(config.repeats):
                for devices, b in keys:
                    runs[devices, b].append(_row(model, devices, b, config, folder))
                    bar.update(1)
            median = {key: _median_run(repeats) for key, repeats in runs.items()}
            alone = median[1, 1]
            rows.append(alone)
            for b in config.batch_devices:
                fleets = [median[devices, b] for devices in config.sizes]
                for row in fleets:
                    row["throughput_vs_one_device"] = row["device_steps_per_s"] / alone["device_steps_per_s"]
                    unbatched = median.get((row["devices"], 1))
                    if b > 1 and unbatched is not None:
                        row["throughput_vs_unbatched"] = row["device_steps_per_s"] / unbatched["device_steps_per_s"]
                for row in fleets[1:]:
                    row["bytes_per_added_device"] = (row["rss_after"] - fleets[0]["rss_after"]) / (
                        row["devices"] - fleets[0]["devices"]
                    )
                rows += fleets
            write_json(config, rows)
    return rows


def _median_run(runs: list[dict]) -> dict:
    """The run of median throughput, with every repeat's throughput beside it."""
    ordered = sorted(runs, key=lambda r: r["device_steps_per_s"])
    return {**ordered[len(ordered) // 2], "repeats_device_steps_per_s": [r["device_steps_per_s"] for r in runs]}


def table(rows: list[dict]) -> str:
    lines = [
        "| model | devices | batched | steps each | device-steps/s | vs one device | vs unbatched | RSS after | "
        "per added device | adapter state |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        # Rows written before fleets could batch devices' passes have no batch_devices: each ran alone.
        batched = f"{r['batch_devices']} ({r['devices_per_pass']:.1f}/pass)" if r.get("batch_devices", 1) > 1 else "no"
        versus = f"{r['throughput_vs_unbatched']:.2f}" if "throughput_vs_unbatched" in r else ""
        lines.append(
            f"| {r['model']} | {r['devices']} | {batched} | {r['steps']} | {r['device_steps_per_s']:.2f} | "
            f"{r.get('throughput_vs_one_device', 1.0):.2f} | {versus} | {format_bytes(r['rss_after'])} | "
            f"{format_bytes(r['bytes_per_added_device']) if 'bytes_per_added_device' in r else ''} | "
            f"{format_bytes(r['adapter_bytes'])} |"
        )
    return "\n".join(lines)
