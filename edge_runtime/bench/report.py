"""`edgetune bench report DIR`: every bench JSON in a folder as one Markdown page with PNG plots.

A file's kind is read from its rows' fields, so results written before the report existed
(tools/results/*) render too. Each kind gets its bench's own Markdown table and the plots that
carry a paper's claim: peak memory per method against the inference peak (MeZO: ZO trains at
inference memory), loss and accuracy against forward passes (ZO-Bench: equal query budgets),
step time against one forward pass (two-point ZO's floor is 2), bytes per round (Spry,
FedKSeed) and accuracy per federated round (Spry).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.config import setting
from edge_runtime.errors import UserError

MB = 1e6


@dataclass
class ReportConfig:
    folder: str = setting("folder whose bench JSON files are rendered (also the positional DIR)", ".")
    out: str | None = setting("Markdown page to write; none = DIR/report.md, plots in DIR/plots/", None)

    def validate(self) -> None:
        if not Path(self.folder).is_dir():
            raise UserError(f"not a folder: {self.folder}")


def kind_of(rows: list[dict]) -> str | None:
    """Which bench wrote these rows, from the fields only that bench writes."""
    fields = set().union(*(r.keys() for r in rows)) if rows else set()
    for kind, marker in (("convergence", "curve"), ("comm", "up_bytes_per_device"), ("memory", "estimate_bytes"),
                         ("fleet", "device_steps"), ("speed", "forward_seconds"), ("federated", "rounds_to_target")):
        if marker in fields:
            return kind
    return None


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("bench report draws with matplotlib: pip install 'edgetune[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _groups(rows: list[dict], keys: tuple[str, ...]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(" ".join(str(row.get(k, "")) for k in keys).strip(), []).append(row)
    return grouped


def _figure(plt, panels: int, height: float = 3.2):
    figure, axes = plt.subplots(1, panels, figsize=(5.2 * panels, height), squeeze=False)
    return figure, list(axes[0])


def plot_memory(plt, rows: list[dict]):
    """Measured peak per method, the inference peak as a line."""
    rows = [r for r in rows if r.get("peak_bytes") and r.get("inference_peak_bytes") and r["method"] != "inference"]
    groups = _groups(rows, ("model", "task", "adapter", "precision", "backend", "batch"))
    if not groups:
        return None
    figure, axes = _figure(plt, len(groups))
    for axis, (title, group) in zip(axes, groups.items()):
        axis.bar([r["method"] for r in group], [r["peak_bytes"] / MB for r in group], color="tab:blue")
        axis.axhline(group[0]["inference_peak_bytes"] / MB, color="black", linestyle="--", label="inference peak")
        axis.set(title=title, ylabel="peak memory (MB)")
        axis.tick_params(axis="x", labelrotation=60)
        axis.legend()
    return figure


def plot_curves(plt, rows: list[dict]):
    """Training loss and dev accuracy against forward passes, and accuracy against training wall time
    (where the rows have it), one line per method."""
    groups = _groups([r for r in rows if r.get("curve")], ("model", "task", "adapter"))
    if not groups:
        return None
    timed = all("train_seconds" in p for r in rows if r.get("curve") for p in r["curve"])
    # Dev loss is one measurement at every point; the training loss along a curve is a mean of batch
    # losses since the last point, so its first point (a probe before training) is not comparable.
    loss_key = "eval_loss" if all(p.get("eval_loss") is not None for r in rows if r.get("curve")
                                  for p in r["curve"]) else "train_loss"
    panels = 3 if timed else 2
    figure, axes = _figure(plt, panels * len(groups))
    for g, (title, group) in enumerate(groups.items()):
        loss_axis, accuracy_axis = axes[panels * g], axes[panels * g + 1]
        for row in group:
            passes = [p["forward_passes"] for p in row["curve"]]
            loss_axis.plot(passes, [p[loss_key] for p in row["curve"]], marker=".", label=row["method"])
            accuracy_axis.plot(passes, [p["eval_accuracy"] for p in row["curve"]], marker=".", label=row["method"])
            if timed:
                axes[panels * g + 2].plot([p["train_seconds"] for p in row["curve"]],
                                          [p["eval_accuracy"] for p in row["curve"]], marker=".", label=row["method"])
        loss_name = "dev loss" if loss_key == "eval_loss" else "train loss"
        loss_axis.set(title=f"{title}: {loss_name}", xlabel="forward passes", ylabel=loss_name)
        accuracy_axis.set(title=f"{title}: dev accuracy", xlabel="forward passes", ylabel="accuracy")
        accuracy_axis.legend(fontsize="x-small")
        if timed:
            axes[panels * g + 2].set(title=f"{title}: dev accuracy", xlabel="training wall time (s)",
                                     ylabel="accuracy")
    return figure


def _step_label(row: dict) -> str:
    """A method, with its queries and batched ZO passes where the rows vary them."""
    if not row.get("zo_pass"):
        return row["method"]
    return f"{row['method']} q{row['queries']}" + (" batched" if row["zo_pass"] == "batched" else "")


def plot_step_time(plt, rows: list[dict]):
    """Time per step in units of one forward pass, with the floors of one and two passes."""
    rows = [r for r in rows if r.get("ratio_to_forward") and r["method"] != "forward"]
    groups = _groups(rows, ("model", "task", "adapter", "precision", "backend", "batch"))
    if not groups:
        return None
    figure, axes = _figure(plt, len(groups))
    for axis, (title, group) in zip(axes, groups.items()):
        axis.bar([_step_label(r) for r in group], [r["ratio_to_forward"] for r in group], color="tab:green")
        axis.axhline(1, color="black", linestyle=":", label="one forward pass")
        axis.axhline(2, color="black", linestyle="--", label="two-point ZO floor")
        axis.set(title=title, ylabel="step time / forward time")
        axis.tick_params(axis="x", labelrotation=60)
        axis.legend()
    return figure


def plot_bytes(plt, rows: list[dict]):
    """Upload per device per round, log scale: seeds and scalars sit orders of magnitude below."""
    groups = _groups(rows, ("model", "source"))
    if not groups:
        return None
    figure, axes = _figure(plt, 1, height=3.6)
    axis, width = axes[0], 0.8 / max(len({r["planner"] for r in rows}), 1)
    planners = list(dict.fromkeys(r["planner"] for r in rows))
    for i, planner in enumerate(planners):
        heights = [next((r["up_bytes_per_device"] for r in g if r["planner"] == planner), 0) for g in groups.values()]
        axis.bar([x + i * width for x in range(len(groups))], heights, width, label=planner)
    axis.set_xticks([x + width * (len(planners) - 1) / 2 for x in range(len(groups))], list(groups))
    axis.set(yscale="log", ylabel="bytes uploaded per device per round")
    axis.legend()
    return figure


def plot_rounds(plt, rows: list[dict]):
    """Accuracy of the merged adapter after every federated round, one line per run."""
    groups = _groups(rows, ("model", "task"))
    figure, axes = _figure(plt, len(groups), height=3.6)
    for axis, (title, group) in zip(axes, groups.items()):
        for row in group:
            axis.plot(range(len(row["accuracy"]) + 1), [row["initial_accuracy"], *row["accuracy"]], marker=".",
                      label=row["run"])
        axis.set(title=f"{title}: {group[0]['devices']} devices", xlabel="round (0 = initial adapter)",
                 ylabel="dev accuracy")
        axis.legend(fontsize="x-small")
    return figure


def plot_update_bytes(plt, rows: list[dict]):
    """Bytes a device uploads per update, per run, log scale."""
    groups = _groups(rows, ("model",))
    figure, axes = _figure(plt, len(groups), height=3.6)
    for axis, (title, group) in zip(axes, groups.items()):
        axis.bar([r["run"] for r in group], [r["bytes_up_per_update"] for r in group], color="tab:orange")
        axis.set(title=title, yscale="log", ylabel="bytes uploaded per update")
        axis.tick_params(axis="x", labelrotation=45)
    return figure


PLOTS: dict[str, list[tuple[str, Callable]]] = {
    "convergence": [("curves", plot_curves), ("memory", plot_memory), ("step-time", plot_step_time)],
    "memory": [("memory", plot_memory)],
    "speed": [("step-time", plot_step_time)],
    "comm": [("bytes", plot_bytes)],
    "fleet": [],
    "federated": [("accuracy", plot_rounds), ("bytes", plot_update_bytes)],
}


def run(config: ReportConfig) -> list[dict]:
    """Writes the page; returns one row per rendered file (its name, kind and plots)."""
    config.validate()
    plt = _pyplot()
    folder = Path(config.folder)
    page = Path(config.out) if config.out else folder / "report.md"
    plots_dir = page.parent / "plots"
    rendered, sections = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            rows = json.loads(path.read_text()).get("rows", [])
        except (json.JSONDecodeError, AttributeError):
            continue  # not a bench file
        kind = kind_of(rows)
        if kind is None:
            continue
        table = importlib.import_module(f"edge_runtime.bench.{kind}").table(rows)
        images = []
        for name, plot in PLOTS[kind]:
            figure = plot(plt, rows)
            if figure is None:
                continue
            plots_dir.mkdir(parents=True, exist_ok=True)
            image = plots_dir / f"{path.stem}-{name}.png"
            figure.tight_layout()
            figure.savefig(image, dpi=100)
            plt.close(figure)
            images.append(image)
        links = "\n\n".join(f"![{path.stem} {image.stem}]({image.relative_to(page.parent)})" for image in images)
        sections.append(f"## {path.name} ({kind})\n\n{table}\n\n{links}".rstrip())
        rendered.append({"file": path.name, "kind": kind, "rows": len(rows), "plots": [str(i) for i in images]})
    if not rendered:
        raise UserError(f"no bench JSON files in {folder}")
    page.write_text(f"# Bench report\n\n{len(rendered)} result files from `{folder}`.\n\n"
                    + "\n\n".join(sections) + "\n")
    return rendered


def table(rendered: list[dict]) -> str:
    return "\n".join(f"{r['file']}: {r['kind']}, {r['rows']} rows, {len(r['plots'])} plots" for r in rendered)
