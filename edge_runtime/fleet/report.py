"""The fleet emulation's report: one JSON file with everything, a Markdown page, and the accuracy
per round as a PNG (matplotlib, files only)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from edge_runtime.fleet.emulator import FleetResult, as_dict
from edge_runtime.units import format_bytes


def write_report(result: FleetResult, config, out_dir: str) -> dict[str, Path]:
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "fleet.json", "markdown": folder / "fleet.md"}
    paths["json"].write_text(json.dumps({"config": _plain(vars(config)), **as_dict(result)}, indent=2))
    plot = _plot(result, folder / "accuracy.png")
    if plot:
        paths["plot"] = plot
    paths["markdown"].write_text(markdown(result, config, plot.name if plot else None))
    return paths


def _plain(values: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def markdown(result: FleetResult, config, plot: str | None) -> str:
    lines = [f"# Fleet emulation: {config.devices} devices, {config.planner} ({result.rounds[0]['method'] if result.rounds else ''}), "
             f"{config.model} on {config.task}", "",
             f"Wall time {result.wall_s:.0f} s for {_hours(result.virtual_s)} of emulated time; peak resident memory "
             f"{format_bytes(result.peak_rss_bytes)} for the whole process (one copy of the base per host).", ""]
    batching = result.batching
    if batching.get("passes"):
        lines += [f"Forward passes batched across devices (up to {config.batch_devices} per pass): "
                  f"{batching['device_passes']} device passes in {batching['passes']} passes, "
                  f"{batching['device_passes'] / batching['passes']:.1f} devices per pass"
                  + (f"; batching stopped: {batching['unbatchable']}" if batching.get("unbatchable") else "") + ".", ""]
    if plot:
        lines += [f"![accuracy per round]({plot})", ""]
    lines += ["| round | devices | updates | late/refused | dropped/offline | slices | train loss | eval acc | "
              "up | down | wall s | virtual s |", "|---|---|---|---|---|---|---|---|---|---|---|---|",
              f"| initial | | | | | | {result.initial.get('train_loss', float('nan')):.4f} | "
              f"{result.initial.get('eval_accuracy', float('nan')):.3f} | | | | |"]
    for r in result.rounds:
        o = r["outcomes"]
        lines.append(f"| {r['round']} | {r['assigned']} | {r['updates']} | {o.get('rejected', 0)}/{o.get('refused', 0)} "
                     f"| {o.get('dropped', 0)}/{o.get('offline', 0)} | {r['slices_trained']}/{r['slices_total']} "
                     f"| {r['train_loss']:.4f} | {r['eval_accuracy']:.3f} | {format_bytes(r['bytes_up'])} "
                     f"| {format_bytes(r['bytes_down'])} | {r['wall_s']:.1f} | {r['virtual_s']:.0f} |")
    lines += ["", "| device type | devices | updates accepted | late | declined | memory cap | accounted peak (max) |",
              "|---|---|---|---|---|---|---|"]
    for profile, devices in _by_profile(result.devices).items():
        outcomes = Counter()
        for d in devices:
            outcomes.update(d["outcomes"])
        lines.append(f"| {profile} | {len(devices)} | {outcomes['trained']} | {outcomes['rejected']} | "
                     f"{outcomes['refused']} | {format_bytes(devices[0]['memory_cap'])} | "
                     f"{format_bytes(max(d['accounted_peak'] for d in devices))} |")
    return "\n".join(lines) + "\n"


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
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(rounds, accuracy, marker="o")
    left.set(xlabel="round (-1 = initial adapter)", ylabel="eval accuracy", title="accuracy per round")
    right.plot(rounds, loss, marker="o", color="tab:red")
    right.set(xlabel="round (-1 = initial adapter)", ylabel="train loss (merged adapter)", title="training loss")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
