"""`edgetune bench convergence`: every method trained on the same query budget, ZO-Bench style.

ZO-Bench compares methods at an equal number of function queries (forward passes), not equal
steps: a ZO-SGD step costs two, ZO-SGD-Cons five, a Forward-Grad step one (heavier) pass. Each
cell (model x task x adapter x method) trains with the ordinary trainer for budget / passes-per-step
steps and records the loss and dev accuracy along the way, the final accuracy, the peak memory
beside inference's (each measured in a fresh process, see memory_probe) and the median time per
step beside one forward pass of the same batch, the floor no two-point method can beat by 2x.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import psutil
import torch
from tqdm import tqdm

from edge_runtime.bench.convergence_config import ConvergenceBenchConfig
from edge_runtime.bench.memory import probe_in_fresh_process
from edge_runtime.bench.results import write_results
from edge_runtime.bench.speed import median_seconds
from edge_runtime.config import build_config
from edge_runtime.errors import UserError
from edge_runtime.estimators import METHODS, get_method
from edge_runtime.memory import Workload, estimate
from edge_runtime.spec import MethodSpec
from edge_runtime.training.config import TrainConfig
from edge_runtime.training.trainer import Run, build_run, fit
from edge_runtime.units import format_bytes

INFERENCE = "inference"


def run(config: ConvergenceBenchConfig) -> list[dict]:
    config.validate()
    torch.set_num_threads(config.threads)
    methods = list(config.methods or METHODS)
    recipes = config.recipes()
    cells = [(m, t, a) for m in config.models for t in config.tasks for a in config.adapters]
    rows: list[dict] = []
    with (
        tqdm(
            total=len(cells) * len(methods) * len(recipes), desc="bench convergence", disable=not config.progress
        ) as bar,
        _runs_folder(config.keep_runs) as runs_folder,
    ):
        for model, task, adapter in cells:
            inference_peak = None
            for method in methods:
                for variant, overrides in recipes.items():
                    bar.set_postfix_str(f"{model} {task} {adapter} {method} {variant}")
                    out_dir = runs_folder / _run_name(len(rows), model, task, adapter, method, variant)
                    if (out_dir / "metrics.jsonl").exists():  # the trainer appends: two runs' steps would mix
                        raise UserError(f"{out_dir} holds a run already; keep these runs in another folder")
                    train = _train_config(config, model, task, adapter, method, out_dir, overrides)
                    if config.memory and inference_peak is None:
                        inference_peak = _peak(config, train, INFERENCE)
                    rows.append({"variant": variant, "overrides": overrides} | _cell(config, train, inference_peak))
                    write_results("convergence", config, rows, table)  # finished cells survive an interrupted run
                    bar.update(1)
    return rows


@contextlib.contextmanager
def _runs_folder(keep: str | None) -> Iterator[Path]:
    """Where the runs write: `keep` (made if missing, never emptied) or a temporary folder."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="edgetune-convergence-") as scratch:
            yield Path(scratch)
        return
    folder = Path(keep)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot make the runs folder {folder}: {error.strerror}") from None
    yield folder


def _run_name(index: int, model: str, task: str, adapter: str, method: str, variant: str) -> str:
    """A row's folder name: its index keeps repeated cells apart, the rest says what ran there."""
    parts = [f"{index:02d}", Path(model).name, task, adapter, method, *([variant] if variant else [])]
    return "-".join(parts)


def _train_config(
    config: ConvergenceBenchConfig,
    model: str,
    task: str,
    adapter: str,
    method: str,
    out_dir: Path,
    overrides: dict[str, str],
) -> TrainConfig:
    info = get_method(method)
    queries = int(overrides.get("queries", config.estimator.queries))
    steps = max(config.budget // info.passes_per_step(queries), 1)
    return build_config(
        TrainConfig,
        {
            "model": model,
            "task": task,
            "adapter": adapter,
            "method": method,
            "steps": steps,
            "batch_size": config.batch_size,
            "lr": config.learning_rate(adapter, method),
            **asdict(config.estimator),
            "k_shot": config.k_shot,
            "eval_examples": config.eval_examples,
            "eval_every": max(steps // config.eval_points, 1),
            "max_length": config.max_length,
            "seed": config.seed,
            "warm_start": config.warm_start,
            "warm_start_examples": config.warm_start_examples,
            "train_head": config.train_head,
            "lr_schedule": config.lr_schedule,
            "warmup_steps": config.warmup_steps,
            "device": config.device,
            "out_dir": str(out_dir),
            "progress": False,
        },
        overrides,
    )


def _cell(config: ConvergenceBenchConfig, train: TrainConfig, inference_peak: int | None) -> dict:
    info = get_method(train.method)
    row = {
        "model": train.model,
        "task": train.task,
        "adapter": train.adapter,
        "method": train.method,
        "budget": config.budget,
        "passes_per_step": info.passes_per_step(train.estimator.queries),
        "steps": train.steps,
        "queries": train.estimator.queries,
        "mu": train.estimator.mu,
        "batch_size": train.batch_size,
        "max_length": train.max_length,
        "threads": config.threads,
    }
    unfit = _does_not_fit(train)
    if unfit:
        return {**row, "skipped": unfit}
    if config.keep_runs is not None:
        row["run_folder"] = train.out_dir
    run = build_run(train)
    forward_seconds = _forward_seconds(run, config.repeats)
    summary = fit(run)
    reached = _reached(summary, _records(Path(train.out_dir)), row["passes_per_step"])
    peak = _peak(config, train, train.method) if config.memory else None
    step_seconds = reached["step_seconds"]
    return {
        **row,
        **reached,
        "peak_bytes": peak,
        "inference_peak_bytes": inference_peak,
        "ratio_to_inference": peak / inference_peak if peak and inference_peak else None,
        "forward_seconds": forward_seconds,
        "ratio_to_forward": step_seconds / forward_seconds if step_seconds else None,
    }


def run_row(folder: Path, variant: str) -> dict:
    """A finished `edgetune train` run (its folder's summary.json and every step's metrics.jsonl) as a
    row of this bench, so that `bench report` tables and draws it beside the bench's own cells."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
        records = _records(folder)
    except (OSError, ValueError) as error:
        raise UserError(f"{folder} holds no finished training run: {error}") from None
    config = summary["config"]
    passes_per_step = get_method(summary["method"]).passes_per_step(summary["queries"])
    if records and records[-1]["step"] != len(records):
        raise UserError(f"{folder}/metrics.jsonl lacks steps (a thinned copy?): curves need every step's time")
    return {
        "model": summary["model"],
        "task": summary["task"],
        "adapter": config["adapter"],
        "method": summary["method"],
        "variant": variant,
        "passes_per_step": passes_per_step,
        "steps": summary["steps"],
        "queries": summary["queries"],
        "mu": summary["mu"],
        "batch_size": summary["batch_size"],
        "max_length": config["max_length"],
        "run_folder": str(folder),
        **_reached(summary, records, passes_per_step),
    }


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _reached(summary: dict, records: list[dict], passes_per_step: int) -> dict:
    """What a finished run reached, from its summary and its steps' records."""
    return {
        "lr": summary["lr"],
        "trainable_params": summary["trainable_params"],
        "forward_passes": summary["forward_passes"],
        "stopped": summary["stopped"],
        "warm_start": summary["warm_start"],
        "train_examples": summary["train_examples"],
        "eval_examples": summary["eval_examples"],
        "train_wall_s": summary["wall_time_s"],
        "accuracy_before": summary["eval_accuracy_before"],
        "final_accuracy": summary["eval_accuracy_after"],
        "final_stderr": math.sqrt(
            summary["eval_accuracy_after"] * (1 - summary["eval_accuracy_after"]) / summary["eval_examples"]
        ),
        "initial_train_loss": summary["initial_train_loss"],
        "final_train_loss": summary["final_train_loss"],
        "curve": _curve(summary, records, passes_per_step),
        "step_seconds": statistics.median(r["step_seconds"] for r in records) if records else None,
    }


def _does_not_fit(train: TrainConfig) -> str | None:
    """Full fine-tuning of a larger model may not fit this machine: skip it, saying why."""
    if train.adapter != "full":
        return None
    needed = estimate(
        Workload(train.adapter_spec(), MethodSpec(train.method), batch=train.batch_size, seq_len=train.max_length)
    ).total
    free = psutil.virtual_memory().available
    return None if needed < 0.8 * free else f"estimated {format_bytes(needed)}, {format_bytes(free)} free"


def _forward_seconds(run: Run, repeats: int) -> float:
    """One no-grad forward pass over a training batch: the unit every step time is read against."""
    batch = run.objective.encode(run.train[: run.config.batch_size]).to(run.device)

    def forward() -> None:
        with torch.no_grad():
            run.objective.loss(batch)

    return median_seconds(forward, repeats)


def _peak(config: ConvergenceBenchConfig, train: TrainConfig, method: str) -> int:
    """Peak above the runtime for two steps at full max_length (the worst case of the run's batches)."""
    measured = probe_in_fresh_process(
        {
            "model": train.model,
            "task": train.task,
            "method": method,
            "precision": train.precision,
            "adapter": train.adapter,
            "batch": train.batch_size,
            "seq_len": train.max_length,
            "lora_r": train.lora_r,
            "steps": 2,
            "threads": config.threads,
            **asdict(train.estimator),
            "nan_guard": train.nan_guard,
        }
    )
    return measured["peak_bytes"]


def _curve(summary: dict, records: list[dict], passes_per_step: int) -> list[dict]:
    """Dev accuracy at each evaluation, with the mean training loss of the steps since the last one and
    the training wall time so far (evaluations excluded)."""
    points = [
        {
            "step": 0,
            "forward_passes": 0,
            "train_seconds": 0.0,
            "train_loss": summary["initial_train_loss"],
            "eval_accuracy": summary["eval_accuracy_before"],
            "eval_loss": summary["eval_loss_before"],
        }
    ]
    window: list[float] = []
    seconds = 0.0
    for record in records:
        window.append(record["loss"])
        seconds += record["step_seconds"]
        if "eval_accuracy" in record:
            points.append(
                {
                    "step": record["step"],
                    "forward_passes": record["step"] * passes_per_step,
                    "train_seconds": seconds,
                    "train_loss": statistics.fmean(window),
                    "eval_accuracy": record["eval_accuracy"],
                    "eval_loss": record.get("eval_loss"),
                }
            )
            window = []
    return points


def table(rows: list[dict]) -> str:
    lines = [
        "| model | task | adapter | method | variant | steps | lr | dev acc before -> after | train loss | peak "
        "(x inference) | step (x forward) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        variant = r.get("variant") or ""
        if r.get("skipped"):
            lines.append(
                f"| {r['model']} | {r['task']} | {r['adapter']} | {r['method']} | {variant} | | | skipped: "
                f"{r['skipped']} | | | |"
            )
            continue
        peak = f"{format_bytes(r['peak_bytes'])} ({r['ratio_to_inference']:.2f})" if r.get("ratio_to_inference") else ""
        step = f"{r['step_seconds']:.3f} s" if r.get("step_seconds") else ""
        step += f" ({r['ratio_to_forward']:.1f})" if r.get("ratio_to_forward") else ""
        lines.append(
            f"| {r['model']} | {r['task']} | {r['adapter']} | {r['method']} | {variant} | {r['steps']} | "
            f"{r['lr']:g} | "
            f"{r['accuracy_before']:.3f} -> {r['final_accuracy']:.3f}"
            + (f" (+-{r['final_stderr']:.3f})" if r.get("final_stderr") else "")
            + f" | {r['initial_train_loss']:.3f} -> "
            f"{r['final_train_loss']:.3f} | {peak} | {step} |"
        )
    return "\n".join(lines)
