"""`edgetune bench memory`: measured peak memory per method and precision beside the estimate.

Each row is measured in its own process (see memory_probe) and estimated by the memory model
from shapes alone; the same model then projects the table to models far too big for this
machine (Llama-2-7B, OPT-13B), where published figures can be compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import psutil
from tqdm import tqdm

from edge_runtime.config import setting
from edge_runtime.errors import UserError
from edge_runtime.estimators import METHODS
from edge_runtime.memory import Workload, estimate, inference_estimate
from edge_runtime.models.precision import PRECISIONS, check_precision
from edge_runtime.units import format_bytes

INFERENCE = "inference"



@dataclass
class MemoryBenchConfig:
    model: str = setting("model to measure", "smollm2-135m")
    task: str = setting("task whose examples fill the batch", "sst2")
    seq_len: int = setting("tokens per sequence (examples are stretched to exactly this)", 128)
    batch: int = setting("examples per step", 8)
    lora_r: int = setting("LoRA rank", 8)
    methods: tuple[str, ...] = setting("methods to measure; empty = all", ())
    precisions: tuple[str, ...] = setting("base precisions to measure", ("fp32", "int8"))
    adapters: tuple[str, ...] = setting("lora and/or full (full fine-tuning, fp32, where it fits in RAM)", ("lora",))
    steps: int = setting("steps per measurement (2: optimizer state exists during the second pass)", 2)
    zo_restore: str = setting("ZO restore: snapshot (bit-exact, one copy) or inplace (MeZO, no copy)", "snapshot")
    nan_guard: bool = setting("keep the trainer's NaN guard (two copies of the trainable tensors)", True)
    threads: int = setting("torch threads in each probe", 2)
    project: tuple[str, ...] = setting("architectures to project the table to with the memory model",
                                     ("llama-2-7b", "opt-13b"))
    project_precision: str = setting("base precision of the projected rows", "fp16")
    out: str = setting("JSON file to write", "bench-memory.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        for name in ("seq_len", "batch", "lora_r", "steps", "threads"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise UserError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        for precision in (*self.precisions, self.project_precision):
            check_precision(precision)
        for adapter in self.adapters:
            check_precision("fp32", adapter)
        if self.zo_restore not in ("snapshot", "inplace"):
            raise UserError(f"zo_restore must be snapshot or inplace, got {self.zo_restore!r}")


def run(config: MemoryBenchConfig) -> list[dict]:
    config.validate()
    methods = [INFERENCE, *(config.methods or METHODS)]
    cells = [(adapter, precision) for adapter in config.adapters
             for precision in (("fp32",) if adapter == "full" else config.precisions)]
    rows: list[dict] = []
    with tqdm(total=len(cells) * len(methods), desc="bench memory", disable=not config.progress) as bar:
        for adapter, precision in cells:
            work = Workload(model=config.model, precision=precision, batch=config.batch, seq_len=config.seq_len,
                            lora_r=config.lora_r, adapter=adapter, zo_restore=config.zo_restore,
                            nan_guard=config.nan_guard)
            inference_peak = None
            for method in methods:
                bar.set_postfix_str(f"{adapter} {precision} {method}")
                rows.append(_measured_row(config, work, method, inference_peak))
                inference_peak = inference_peak or rows[-1]["peak_bytes"]
                _write(config, rows)  # a long run's finished rows survive an interruption
                bar.update(1)
    for model in config.project:
        for method in methods:
            work = Workload(model=model, precision=config.project_precision, batch=config.batch,
                            seq_len=config.seq_len, lora_r=config.lora_r)
            rows.append(_estimated_row(work, method))
    _write(config, rows)
    return rows


def _write(config: MemoryBenchConfig, rows: list[dict]) -> None:
    Path(config.out).parent.mkdir(parents=True, exist_ok=True)
    Path(config.out).write_text(json.dumps({"config": asdict(config), "rows": rows}, indent=2))


def _row(work: Workload, method: str) -> dict:
    if method == INFERENCE:
        estimate_bytes, components = inference_estimate(work), None
    else:
        est = estimate(replace(work, method=method))
        estimate_bytes, components = est.total, est.as_dict()
    return {"model": work.model, "method": method, "precision": work.precision, "adapter": work.adapter,
            "batch": work.batch, "seq_len": work.seq_len, "backend": "torch", "zo_restore": work.zo_restore,
            "nan_guard": work.nan_guard, "estimate_bytes": estimate_bytes,
            "estimate_components": components}


def _measured_row(config: MemoryBenchConfig, work: Workload, method: str, inference_peak: int | None) -> dict:
    row = _row(work, method)
    if row["estimate_bytes"] > 0.8 * psutil.virtual_memory().available:
        return {**row, "peak_bytes": None, "inference_peak_bytes": inference_peak,
                "skipped": f"estimated {format_bytes(row['estimate_bytes'])} does not fit in free RAM"}
    probe = {"model": work.model, "task": config.task, "method": method, "precision": work.precision,
             "adapter": work.adapter, "batch": work.batch, "seq_len": work.seq_len, "lora_r": work.lora_r,
             "steps": config.steps, "threads": config.threads, "zo_restore": work.zo_restore,
             "nan_guard": work.nan_guard}
    measured = probe_in_fresh_process(probe)
    peak = measured["peak_bytes"]
    inference_peak = inference_peak if inference_peak is not None else peak
    return {**row, "peak_bytes": peak, "inference_peak_bytes": inference_peak,
            "measured_seq_len": measured["seq_len"], "runtime_bytes": measured["runtime_bytes"],
            "ratio_to_inference": peak / inference_peak, "estimate_error": row["estimate_bytes"] / peak - 1}


def probe_in_fresh_process(probe: dict) -> dict:
    """Run one `memory_probe` measurement (see there for the fields) in its own process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(probe["threads"]), "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-m", "edge_runtime.bench.memory_probe", json.dumps(probe)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise UserError(f"memory probe failed for {probe}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _estimated_row(work: Workload, method: str) -> dict:
    try:
        row = _row(work, method)
    except RuntimeError as error:  # a pass transformers cannot run for this architecture/precision
        return {**_row(work, INFERENCE), "method": method, "estimate_bytes": None, "peak_bytes": None,
                "projected": True, "error": str(error).splitlines()[0]}
    return {**row, "peak_bytes": None, "inference_peak_bytes": inference_estimate(work), "projected": True,
            "ratio_to_inference": row["estimate_bytes"] / inference_estimate(work)}


def table(rows: list[dict]) -> str:
    """Markdown table of the rows (the README's)."""
    lines = ["| model | adapter | precision | method | peak | x inference | estimate | error |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['model']} | {r['adapter']} | {r['precision']} | {r['method']} | projected | | "
                         f"failed: {r['error'][:60]} | |")
            continue
        peak = "projected" if r.get("projected") else (format_bytes(r["peak_bytes"]) if r["peak_bytes"] else "skipped")
        error = f"{r['estimate_error']:+.1%}" if r.get("estimate_error") is not None else ""
        lines.append(f"| {r['model']} | {r['adapter']} | {r['precision']} | {r['method']} | {peak} | "
                     f"{r['ratio_to_inference']:.2f} | {format_bytes(r['estimate_bytes'])} | {error} |")
    return "\n".join(lines)
