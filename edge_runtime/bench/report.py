"""`edgetune bench report DIR`: the benchmark pages, written from the results beside them.

A benchmark folder (docs/benchmarks/<name>/) holds its result JSON, plots/, and `notes.md`: front
matter saying what it measures, where and when, and the commands that wrote the results, then the
conclusions drawn from them. Its page, README.md (which both MkDocs and a repository browser show
for the folder), is the notes followed by every JSON file's table and plots, so regenerating it
never loses the hand-written part and a table can never disagree with its JSON. `bench report` on a
folder of benchmark folders rewrites each page and an index linking them; on a folder of bench JSON
without notes (a runs/ folder) it writes the tables and plots alone.

A file's kind is its "bench" field, or for files written before benches recorded it, read from its
rows' fields. Each kind gets its bench's own Markdown table and the plots that carry a paper's claim:
peak memory per method against the inference peak (MeZO: ZO trains at inference memory), loss and
accuracy against forward passes (ZO-Bench: equal query budgets), step time against one forward pass
(two-point ZO's floor is 2), bytes per round (Spry, FedKSeed) and accuracy per federated round (Spry).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from edge_runtime.config import build_config, setting
from edge_runtime.errors import UserError

MB = 1e6
PAGE = "README.md"
NOTES = "notes.md"
GENERATED = "<!-- Written by `edgetune bench report` from notes.md and the JSON here; edit those, not this. -->"
# Row fields renamed since results were recorded (the rows of memory, speed and fleet once said batch
# and seq_len, as their flags did): old files render under the current names.
RENAMED = {"batch": "batch_size", "seq_len": "max_length"}


@dataclass
class ReportConfig:
    folder: str = setting(
        "a benchmark folder, or a folder of them (docs/benchmarks) to rewrite every page and the "
        "index (also the positional DIR)",
        ".",
    )
    plots: bool = setting("draw the plots (false: rewrite the pages only, linking the plots already drawn)", True)

    def validate(self) -> None:
        if not Path(self.folder).is_dir():
            raise UserError(f"not a folder: {self.folder}")


@dataclass
class PageNotes:
    """The front matter of a benchmark folder's notes.md: the head of its page."""

    title: str = setting("the page's title", "")
    measures: str = setting("what the benchmark measures, in a sentence or two", "")
    machine: str = setting("the machine the results were measured on", "")
    date: str = setting("when they were measured", "")
    commands: str = setting("the commands that wrote the results, as a bash block", "")

    def validate(self) -> None:
        missing = [f.name for f in fields(self) if not getattr(self, f.name).strip()]
        if missing:
            raise UserError(f"notes.md front matter lacks {', '.join(missing)}")


def read_notes(path: Path) -> tuple[PageNotes, str]:
    """(front matter, the Markdown after it) of a notes.md."""
    text = path.read_text()
    head, closed, body = text.removeprefix("---\n").partition("\n---\n")
    if not text.startswith("---\n") or not closed:
        raise UserError(f"{path}: expected front matter between two --- lines at the top")
    matter = yaml.safe_load(head) or {}
    if not isinstance(matter, dict):
        raise UserError(f"{path}: the front matter must be a table of keys")
    try:
        return build_config(PageNotes, matter), body.strip()
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


def kind_of(data: dict) -> str | None:
    """Which bench wrote this file: its "bench" field, else the fields only that bench's rows have."""
    rows = data.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return None
    if data.get("bench"):
        return data["bench"]
    found = set().union(*(r.keys() for r in rows)) if rows else set()
    for kind, marker in (
        ("convergence", "curve"),
        ("comm", "up_bytes_per_device"),
        ("memory", "estimate_bytes"),
        ("fleet", "device_steps"),
        ("speed", "forward_seconds"),
        ("federated", "rounds_to_target"),
    ):
        if marker in found:
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


def _current_names(row: dict) -> dict:
    return {RENAMED.get(key, key): value for key, value in row.items()}


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
    groups = _groups(rows, ("model", "task", "adapter", "precision", "backend", "batch_size"))
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
    loss_key = (
        "eval_loss"
        if all(p.get("eval_loss") is not None for r in rows if r.get("curve") for p in r["curve"])
        else "train_loss"
    )
    panels = 3 if timed else 2
    figure, axes = _figure(plt, panels * len(groups))
    for g, (title, group) in enumerate(groups.items()):
        loss_axis, accuracy_axis = axes[panels * g], axes[panels * g + 1]
        for row in group:
            passes = [p["forward_passes"] for p in row["curve"]]
            # Variants of one method (another rate, rank or seed) are told apart by their names.
            label = " ".join(filter(None, (row["method"], row.get("variant"))))
            loss_axis.plot(passes, [p[loss_key] for p in row["curve"]], marker=".", label=label)
            accuracy_axis.plot(passes, [p["eval_accuracy"] for p in row["curve"]], marker=".", label=label)
            if timed:
                axes[panels * g + 2].plot(
                    [p["train_seconds"] for p in row["curve"]],
                    [p["eval_accuracy"] for p in row["curve"]],
                    marker=".",
                    label=label,
                )
        loss_name = "dev loss" if loss_key == "eval_loss" else "train loss"
        loss_axis.set(title=f"{title}: {loss_name}", xlabel="forward passes", ylabel=loss_name)
        accuracy_axis.set(title=f"{title}: dev accuracy", xlabel="forward passes", ylabel="accuracy")
        if timed:
            axes[panels * g + 2].set(title=f"{title}: dev accuracy", xlabel="training wall time (s)", ylabel="accuracy")
        for axis in axes[panels * g + 1 : panels * (g + 1)]:
            _mark_the_start(axis, group[0])
        accuracy_axis.legend(fontsize="x-small")
    return figure


# An accuracy axis spans at least this much, so a change within noise does not fill the panel.
MIN_ACCURACY_SPAN = 0.1


def _mark_the_start(axis, row: dict) -> None:
    """The accuracy training started from and its one-standard-error band: what a curve must leave
    to show learning, not noise."""
    start, examples = row.get("accuracy_before"), row.get("eval_examples")
    if start is not None and examples:
        error = (start * (1 - start) / examples) ** 0.5
        axis.axhspan(start - error, start + error, color="grey", alpha=0.2, label="start +- 1 s.e.")
        axis.axhline(start, color="grey", linestyle="--", linewidth=0.8)
    low, high = axis.get_ylim()
    if high - low < MIN_ACCURACY_SPAN:
        middle = (low + high) / 2
        axis.set_ylim(middle - MIN_ACCURACY_SPAN / 2, middle + MIN_ACCURACY_SPAN / 2)


def _step_label(row: dict) -> str:
    """A method, with its queries and batched ZO passes where the rows vary them."""
    if not row.get("zo_pass"):
        return row["method"]
    return f"{row['method']} q{row['queries']}" + (" batched" if row["zo_pass"] == "batched" else "")


def plot_step_time(plt, rows: list[dict]):
    """Time per step in units of one forward pass, with the floors of one and two passes."""
    rows = [r for r in rows if r.get("ratio_to_forward") and r["method"] != "forward"]
    groups = _groups(rows, ("model", "task", "adapter", "precision", "backend", "batch_size"))
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
            axis.plot(
                range(len(row["accuracy"]) + 1),
                [row["initial_accuracy"], *row["accuracy"]],
                marker=".",
                label=row["run"],
            )
        axis.set(
            title=f"{title}: {group[0]['devices']} devices", xlabel="round (0 = initial adapter)", ylabel="dev accuracy"
        )
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
    "federated": [("accuracy", plot_rounds), ("bytes", plot_update_bytes)],
}


def _plots(path: Path, kind: str, rows: list[dict], page_dir: Path, plt) -> list[Path]:
    """The plots of one results file: drawn into page_dir/plots/, or with plt None the ones drawn before."""
    stem = "-".join(path.relative_to(page_dir).with_suffix("").parts)
    images = []
    for name, plot in PLOTS.get(kind, []):
        image = page_dir / "plots" / f"{stem}-{name}.png"
        if plt is None:
            if image.is_file():
                images.append(image)
            continue
        figure = plot(plt, rows)
        if figure is None:
            continue
        image.parent.mkdir(parents=True, exist_ok=True)
        figure.tight_layout()
        figure.savefig(image, dpi=100)
        plt.close(figure)
        images.append(image)
    return images


def _section(path: Path, page_dir: Path, plt) -> tuple[str, dict]:
    """A results file as a heading linking it, then (for a bench's file) its table and plots."""
    name = path.relative_to(page_dir).as_posix()
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        data = None
    kind = kind_of(data) if isinstance(data, dict) else None
    if kind is None:
        return f"### [{name}]({name})", {"file": name, "kind": None, "plots": []}
    rows = [_current_names(row) for row in data["rows"]]
    table = importlib.import_module(f"edge_runtime.bench.{kind.replace('-', '_')}").table(rows)
    images = _plots(path, kind, rows, page_dir, plt)
    links = "".join(f"\n\n![{image.stem}]({image.relative_to(page_dir).as_posix()})" for image in images)
    return f"### [{name}]({name}) (bench {kind})\n\n{table}{links}", {"file": name, "kind": kind, "plots": images}


def benchmark_page(folder: Path, plt) -> tuple[str, list[dict]]:
    """A benchmark folder's page: its notes (if it has them), then every JSON file's table and plots."""
    sections = [_section(path, folder, plt) for path in sorted(folder.rglob("*.json"))]
    if not any(rendered["kind"] for _, rendered in sections) and not (folder / NOTES).is_file():
        raise UserError(f"no bench JSON files in {folder}")
    head = [f"# Bench report\n\nThe result files in `{folder}`."]
    if (folder / NOTES).is_file():
        notes, body = read_notes(folder / NOTES)
        head = [
            f"# {notes.title}",
            GENERATED,
            notes.measures.strip(),
            f"| | |\n|---|---|\n| machine | {notes.machine} |\n| date | {notes.date} |",
            f"## Commands\n\n```bash\n{notes.commands.strip()}\n```",
            body,
        ]
    parts = [*head, "## Results", *(text for text, _ in sections)]
    return "\n\n".join(part for part in parts if part) + "\n", [rendered for _, rendered in sections]


def index_page(folders: list[Path]) -> str:
    """The benchmarks' index: one row per page, linking it, with what it measures, where and when."""
    lines = [
        "# Benchmarks",
        "",
        GENERATED,
        "",
        "Each page says what its benchmark measures, on which machine and when, and the commands that wrote "
        "its results, then gives every table and plot drawn from the JSON kept beside it. "
        "`edgetune bench report docs/benchmarks` rewrites the pages and this index from each folder's "
        "notes.md and results.",
        "",
        "| benchmark | what it measures | machine | date |",
        "|---|---|---|---|",
    ]
    for folder in folders:
        notes, _ = read_notes(folder / NOTES)
        cells = (f"[{notes.title}]({folder.name}/{PAGE})", notes.measures, notes.machine, notes.date)
        lines.append("| " + " | ".join(" ".join(cell.split()) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def run(config: ReportConfig) -> list[dict]:
    """Writes the page (or every page and the index); returns one row per results file (its page, kind and plots)."""
    config.validate()
    plt = _pyplot() if config.plots else None
    folder = Path(config.folder)
    benchmarks = sorted(notes.parent for notes in folder.glob(f"*/{NOTES}"))
    rendered = []
    for page_dir in benchmarks or [folder]:
        text, files = benchmark_page(page_dir, plt)
        (page_dir / PAGE).write_text(text)
        rendered += [{"page": str(page_dir / PAGE), **f} for f in files]
    if benchmarks:
        (folder / PAGE).write_text(index_page(benchmarks))
    return rendered


def table(rendered: list[dict]) -> str:
    return "\n".join(
        f"{r['page']}: {r['file']}" + (f" ({r['kind']}, {len(r['plots'])} plots)" if r["kind"] else "")
        for r in rendered
    )
