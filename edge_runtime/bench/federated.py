"""`edgetune bench federated`: Spry against federated ZO-SGD (FedMeZO, seed-and-scalar uploads),
unsliced federated forward gradients (FwdLLM-style) and FedAvg with backprop, on one emulated fleet.

Every run is the fleet emulator on the same fleet and rounds: identical always-on devices (so only
the method differs), the task's training set split among them with Dirichlet alpha 1.0 as in the
Spry paper, in-process transport. A row per run: accuracy after every round, the rounds (and wall
time, from the mean round) to first reach each target accuracy (the Spry paper's convergence
measure), bytes per round and per update, the device's accounted peak, wall and emulated time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tqdm import tqdm

from edge_runtime.bench.federated_config import FEDERATED_RUNS, FederatedBenchConfig
from edge_runtime.bench.results import write_results
from edge_runtime.config import build_config
from edge_runtime.fleet.config import FleetConfig
from edge_runtime.fleet.emulator import run_fleet
from edge_runtime.fleet.report import write_report


def run(config: FederatedBenchConfig) -> list[dict]:
    config.validate()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-federated-") as scratch:
        for name in tqdm(config.runs, desc=f"bench federated ({config.model})", disable=not config.progress):
            rows.append(_run(config, name, Path(config.fleet_reports or scratch) / name))
            write_results("federated", config, rows, table)  # finished runs survive an interrupted long bench
    return rows


def _run(config: FederatedBenchConfig, name: str, out_dir: Path) -> dict:
    run = FEDERATED_RUNS[name]
    planner, method, lr = run.planner, run.method, run.lr
    fleet = build_config(
        FleetConfig,
        {
            "model": config.model,
            "task": config.task,
            "devices": config.devices,
            "profiles": (config.profile,),
            "rounds": config.rounds,
            "planner": planner,
            "method": method,
            "lr": lr,
            "train_head": run.train_head,
            "warm_start": config.warm_start,
            "warm_start_examples": config.warm_start_examples,
            "dirichlet_alpha": 1.0,
            "transport": "inprocess",
            "out_dir": str(out_dir),
            "round_deadline_s": 3600.0,
            "threads": config.threads,
            "local_steps": config.local_steps,
            "batch_size": config.batch_size,
            "max_length": config.max_length,
            "eval_examples": config.eval_examples,
            "train_probe_examples": config.train_probe_examples,
            "data_dir": config.data_dir,
            "seed": config.seed,
            "progress": False,
        },
    )
    result = run_fleet(fleet, log=lambda _: None)
    write_report(result, fleet, fleet.out_dir)
    accuracy = [r["eval_accuracy"] for r in result.rounds]
    rounds = len(result.rounds)
    # Bytes of the training rounds: a warm start's statistics round is a one-off, reported apart.
    training = [r for r in result.rounds if r.get("work") != "statistics"] or result.rounds
    warm = next((r for r in result.rounds if r.get("work") == "statistics"), None)
    return {
        "run": name,
        "model": config.model,
        "task": config.task,
        "devices": config.devices,
        "local_steps": config.local_steps,
        "planner": planner,
        "method": method,
        "lr": lr,
        "rounds": rounds,
        "initial_accuracy": result.initial["eval_accuracy"],
        "accuracy": accuracy,
        "final_accuracy": accuracy[-1],
        "best_accuracy": max(accuracy),
        "initial_train_loss": result.initial["train_loss"],
        "final_train_loss": result.rounds[-1]["train_loss"],
        "rounds_to_target": {f"{t:g}": rounds_to(accuracy, t) for t in config.targets},
        "warm_start": None
        if warm is None
        else {
            "kind": warm.get("warm_start"),
            "accuracy": warm["eval_accuracy"],
            "bytes_up_per_device": warm["bytes_up_per_update"],
        },
        "bytes_up_per_round": sum(r["bytes_up"] for r in training) / len(training),
        "bytes_down_per_round": sum(r["bytes_down"] for r in training) / len(training),
        "bytes_up_per_update": sum(r["bytes_up_per_update"] for r in training) / len(training),
        "peak_accounted_bytes": max(d["accounted_peak"] for d in result.devices),
        "round_wall_s": [r["wall_s"] for r in result.rounds],
        "wall_s": result.wall_s,
        "virtual_s": result.virtual_s,
    }


def rounds_to(accuracy: list[float], target: float) -> int | None:
    """Rounds run until the merged adapter first scored `target` or better (None: never)."""
    return next((i + 1 for i, value in enumerate(accuracy) if value >= target), None)


def _to_target(row: dict, target: str) -> str:
    rounds = row["rounds_to_target"][target]
    if rounds is None:
        return f"not in {row['rounds']}"
    return f"{rounds} ({sum(row['round_wall_s'][:rounds]) / 60:.1f} min)"


def table(rows: list[dict]) -> str:
    targets = list(rows[0]["rounds_to_target"]) if rows else []
    heads = "".join(f" rounds to {t} (wall) |" for t in targets)
    lines = [
        f"| model | run | planner | method | lr | accuracy initial -> final (best) |{heads} train loss | "
        "upload / update | download / round | device peak | wall |",
        "|---|---|---|---|---|---|" + "---|" * len(targets) + "---|---|---|---|---|",
    ]
    for r in rows:
        reach = "".join(f" {_to_target(r, t)} |" for t in targets)
        lines.append(
            f"| {r['model']} | {r['run']} | {r['planner']} | {r['method']} | {r['lr']:g} | "
            f"{r['initial_accuracy']:.3f} -> {r['final_accuracy']:.3f} ({r['best_accuracy']:.3f}) |{reach} "
            f"{r['initial_train_loss']:.4f} -> {r['final_train_loss']:.4f} | "
            f"{r['bytes_up_per_update'] / 1e3:.2f} KB | {r['bytes_down_per_round'] / 1e6:.2f} MB | "
            f"{r['peak_accounted_bytes'] / 1e6:.0f} MB | {r['wall_s'] / 60:.1f} min |"
        )
    return "\n".join(lines)
