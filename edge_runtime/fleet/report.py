"""The fleet emulation's report: one JSON file with everything, a Markdown page, and the accuracy
per round as a PNG (matplotlib, files only)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from edge_runtime.config import config_values
from edge_runtime.fleet.emulator import FleetResult, as_dict
from edge_runtime.units import format_bytes


def write_report(result: FleetResult, config, out_dir: str) -> dict[str, Path]:
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "fleet.json", "markdown": folder / "fleet.md"}
    paths["json"].write_text(json.dumps({"config": config_values(config), **as_dict(result)}, indent=2))
    plot = _plot(result, folder / "accuracy.png")
    if plot:
        paths["plot"] = plot
    paths["markdown"].write_text(markdown(result, config, plot.name if plot else None))
    return paths


def markdown(result: FleetResult, config, plot: str | None) -> str:
    method = result.rounds[0]["method"] if result.rounds else ""
    lines = [
        f"# Fleet emulation: {config.devices} devices, {config.planner} ({method}), {config.model} on {config.task}",
        "",
        f"Wall time {result.wall_s:.0f} s for {_hours(result.virtual_s)} of emulated time; peak resident memory "
        f"{format_bytes(result.peak_rss_bytes)} for the whole process (one copy of the base per host).",
        "",
    ]
    batching = result.batching
    if batching.get("passes"):
        lines += [
            f"Forward passes batched across devices (up to {config.batch_devices} per pass): "
            f"{batching['device_passes']} device passes in {batching['passes']} passes, "
            f"{batching['device_passes'] / batching['passes']:.1f} devices per pass"
            + (f"; batching stopped: {batching['unbatchable']}" if batching.get("unbatchable") else "")
            + ".",
            "",
        ]
    chosen = Counter(m for r in result.rounds for m in r.get("methods", {}).values())
    if chosen:
        lines += [
            "Methods the coordinator chose (method auto), counted over devices and rounds: "
            + ", ".join(f"{name} {n}" for name, n in chosen.most_common())
            + ".",
            "",
        ]
    lines += [_accuracy_summary(result, config), ""]
    if plot:
        lines += [f"![accuracy per round]({plot})", ""]
    lines += [
        "| round | devices | updates | late/refused | dropped/offline | slices | train loss | eval acc | "
        "up | down | wall s | virtual s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| initial | | | | | | {result.initial.get('train_loss', float('nan')):.4f} | "
        f"{result.initial.get('eval_accuracy', float('nan')):.3f} | | | | |",
    ]
    for r in result.rounds:
        o = r["outcomes"]
        trained = (
            f"warm start: {r.get('warm_start')}"
            if r.get("work") == "statistics"
            else f"{r['slices_trained']}/{r['slices_total']}"
        )
        lines.append(
            f"| {r['round']} | {r['assigned']} | {r['updates']} "
            f"| {o.get('rejected', 0)}/{o.get('refused', 0)} "
            f"| {o.get('dropped', 0)}/{o.get('offline', 0)} | {trained} "
            f"| {r['train_loss']:.4f} | {r['eval_accuracy']:.3f} | {format_bytes(r['bytes_up'])} "
            f"| {format_bytes(r['bytes_down'])} | {r['wall_s']:.1f} | {r['virtual_s']:.0f} |"
        )
    lines += [
        "",
        "| device type | devices | updates accepted | late | declined | memory cap | accounted peak (max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for profile, devices in _by_profile(result.devices).items():
        outcomes = Counter()
        for d in devices:
            outcomes.update(d["outcomes"])
        lines.append(
            f"| {profile} | {len(devices)} | {outcomes['trained']} | {outcomes['rejected']} | "
            f"{outcomes['refused']} | {format_bytes(devices[0]['memory_cap'])} | "
            f"{format_bytes(max(d['accounted_peak'] for d in devices))} |"
        )
    return "\n".join(lines) + "\n"


def stderr(accuracy: float, examples: int) -> float:
    return math.sqrt(accuracy * (1 - accuracy) / max(examples, 1))


def _accuracy_summary(result: FleetResult, config) -> str:
    """Where accuracy started, what the warm start gave and where the rounds ended, with the noise
    of the evaluation beside it, so that a newcomer can tell learning from noise."""
    if not result.rounds:
        return "No round closed."
    n = result.eval_examples or config.eval_examples
    initial, final = result.initial.get("eval_accuracy", float("nan")), result.rounds[-1]["eval_accuracy"]
    warm = next((r for r in result.rounds if r.get("work") == "statistics"), None)
    steps = f"initial adapter {initial:.3f}"
    if warm is not None:
        steps += (
            f" -> after the warm start (round {warm['round']}, {warm.get('warm_start')}) {warm['eval_accuracy']:.3f}"
        )
    steps += f" -> after round {result.rounds[-1]['round']} {final:.3f}"
    return (
        f"Accuracy on {n} dev examples (one standard error: +-{stderr(final, n):.3f}): {steps}; "
        f"{100 * (final - initial):+.1f} points in all."
    )


def _by_profile(devices: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for device in devices:
        grouped.setdefault(device["profile"], []).append(device)
    return dict(sorted(grouped.items()))


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _plot(result: FleetResult, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rounds = [-1] + [r["round"] for r in result.rounds]
    accuracy = [result.initial.get("eval_accuracy")] + [r["eval_accuracy"] for r in result.rounds]
    loss = [result.initial.get("train_loss")] + [r["train_loss"] for r in result.rounds]
    examples = result.eval_examples or 1
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    # Fixed axes (chance to perfect), the evaluation's standard error as error bars and the initial
    # accuracy as a line: a wobble of one standard error must look like one.
    left.errorbar(rounds, accuracy, yerr=[stderr(a, examples) for a in accuracy], marker="o", capsize=3)
    left.axhline(accuracy[0], color="grey", linestyle="--", linewidth=1, label=f"initial {accuracy[0]:.3f}")
    warm = [r["round"] for r in result.rounds if r.get("work") == "statistics"]
    if warm:
        left.axvspan(warm[0] - 0.5, warm[0] + 0.5, color="tab:green", alpha=0.15, label="warm start round")
    left.set_ylim(0.4, 1.0)
    left.legend(loc="lower right", fontsize=8)
    left.set(
        xlabel="round (-1 = initial adapter)", ylabel=f"eval accuracy ({examples} examples)", title="accuracy per round"
    )
    right.plot(rounds, loss, marker="o", color="tab:red")
    right.set_ylim(bottom=0)
    right.set(xlabel="round (-1 = initial adapter)", ylabel="train loss (merged adapter)", title="training loss")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
