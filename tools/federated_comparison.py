"""Spry against federated ZO-SGD (FedMeZO, seed-and-scalar uploads), unsliced federated forward
gradients (FwdLLM-style) and FedAvg with backprop, on the same emulated fleet and the same rounds;
writes each run's fleet report, a JSON summary, a Markdown table and one accuracy-per-round plot.

    python tools/federated_comparison.py --out runs/federated --rounds 20

`--runs` picks some of the runs; their results are added to an existing summary.json in --out.
`--targets` are the accuracies whose first round (and wall time, from the mean round) the table
reports: the Spry paper's "rounds to reach a target accuracy". `--table-only` rewrites the table
and plot from an existing summary.json.

The fleet is 10 identical always-on devices (so only the method differs), SST-2 split among them
with Dirichlet alpha = 1.0 as in the Spry paper, MiniLM with LoRA r=8, in-process transport.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_runtime.config import build_config
from edge_runtime.fleet.config import FleetConfig
from edge_runtime.fleet.emulator import run_fleet
from edge_runtime.fleet.report import write_report

RUNS = {  # name: (planner, method, device lr)
    "spry": ("spry", "forward-grad", 1e-3),
    # A Spry device trains about 1/13 of the adapter, so its forward gradient is that much less noisy
    # than a full-adapter one: it can take a larger step.
    "spry-lr1e-2": ("spry", "forward-grad", 1e-2),
    "fedmezo-seeds": ("zo-seed", "zo-sgd", 1e-3),
    "fedavg-backprop": ("fedavg-full", "fo-adam", 1e-3),
    # FwdLLM's setting: forward gradients, but every device perturbs the whole adapter (no slices).
    "fwdllm-unsliced": ("fedavg-full", "forward-grad", 1e-3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/federated")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a shared machine)")
    parser.add_argument("--local-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--eval-examples", type=int, default=200)
    parser.add_argument("--targets", default="0.6,0.65", help="accuracies to report the rounds to reach")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    summary_path = Path(args.out, "summary.json")
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    targets = [float(t) for t in args.targets.split(",")]
    for name in [] if args.table_only else args.runs.split(","):
        planner, method, lr = RUNS[name]
        config = build_config(FleetConfig, {
            "model": args.model, "devices": args.devices, "profiles": ("jetson-agx-orin-64gb",), "rounds": args.rounds,
            "planner": planner, "method": method, "lr": lr, "dirichlet_alpha": 1.0, "transport": "inprocess",
            "out_dir": f"{args.out}/{name}", "round_deadline_s": 3600.0, "threads": args.threads,
            "local_steps": args.local_steps, "batch_size": args.batch_size, "max_length": args.max_length,
            "eval_examples": args.eval_examples})
        result = run_fleet(config)
        write_report(result, config, config.out_dir)
        summary[name] = {
            "model": args.model, "devices": args.devices, "local_steps": args.local_steps,
            "planner": planner, "method": method, "lr": lr, "rounds": len(result.rounds),
            "round_wall_s": [r["wall_s"] for r in result.rounds],
            "initial_accuracy": result.initial["eval_accuracy"],
            "accuracy": [r["eval_accuracy"] for r in result.rounds],
            "final_accuracy": result.rounds[-1]["eval_accuracy"],
            "best_accuracy": max(r["eval_accuracy"] for r in result.rounds),
            "final_train_loss": result.rounds[-1]["train_loss"],
            "bytes_up_per_round": sum(r["bytes_up"] for r in result.rounds) / len(result.rounds),
            "bytes_down_per_round": sum(r["bytes_down"] for r in result.rounds) / len(result.rounds),
            "bytes_up_per_update": sum(r["bytes_up_per_update"] for r in result.rounds) / len(result.rounds),
            "peak_accounted_bytes": max(d["accounted_peak"] for d in result.devices),
            "wall_s": result.wall_s, "virtual_s": result.virtual_s,
        }
        summary_path.write_text(json.dumps(summary, indent=2))
    markdown = table(summary, targets)
    Path(args.out, "table.md").write_text(markdown + "\n")
    print(markdown)
    plot(summary, Path(args.out, "accuracy.png"))


def rounds_to(accuracy: list[float], target: float) -> int | None:
    """Rounds run until the merged adapter first scored `target` or better (None: never)."""
    return next((i + 1 for i, value in enumerate(accuracy) if value >= target), None)


def _to_target(s: dict, target: float) -> str:
    rounds = rounds_to(s["accuracy"], target)
    if rounds is None:
        return f"not in {s['rounds']}"
    mean_round_s = s["wall_s"] / s["rounds"]
    return f"{rounds} ({rounds * mean_round_s / 60:.1f} min)"


def table(summary: dict, targets: list[float]) -> str:
    heads = "".join(f" rounds to {t:.2f} (wall) |" for t in targets)
    lines = [f"| run | planner | method | lr | accuracy initial -> final (best) |{heads} train loss | upload / update | "
             "download / round | device peak | wall |", "|---|---|---|---|---|" + "---|" * len(targets) + "---|---|---|---|---|"]
    for name, s in summary.items():
        reach = "".join(f" {_to_target(s, t)} |" for t in targets)
        lines.append(f"| {name} | {s['planner']} | {s['method']} | {s['lr']:g} | {s['initial_accuracy']:.3f} -> "
                     f"{s['final_accuracy']:.3f} ({s['best_accuracy']:.3f}) |{reach} {s['final_train_loss']:.4f} | "
                     f"{s['bytes_up_per_update'] / 1e3:.2f} KB | {s['bytes_down_per_round'] / 1e6:.2f} MB | "
                     f"{s['peak_accounted_bytes'] / 1e6:.0f} MB | {s['wall_s'] / 60:.1f} min |")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for name, s in summary.items():
        axis.plot(range(-1, len(s["accuracy"])), [s["initial_accuracy"], *s["accuracy"]], marker=".", label=name)
    first = next(iter(summary.values()))
    axis.set(xlabel="round (-1 = initial adapter)", ylabel="SST-2 eval accuracy",
             title=f"{first.get('model', 'minilm')}, {first.get('devices', 10)} devices, Dirichlet 1.0")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
