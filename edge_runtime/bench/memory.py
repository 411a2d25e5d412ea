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
from dataclasses import asdict, replace
from pathlib import Path

import psutil
from tqdm import tqdm

from edge_runtime.bench.graphs import backprop_trains, exported_graph, graph_bytes, training_artifacts
from edge_runtime.bench.memory_config import MemoryBenchConfig
from edge_runtime.bench.results import write_json
from edge_runtime.errors import UserError
from edge_runtime.estimators import METHODS
from edge_runtime.estimators.registry import copies_per_pass
from edge_runtime.memory import Workload, estimate, inference_estimate
from edge_runtime.memory.model import PassNotSimulated
from edge_runtime.ort.backprop import BACKPROP_METHODS
from edge_runtime.ort.manifest import PRECISIONS as ORT_PRECISIONS
from edge_runtime.ort.methods import METHODS as ORT_METHODS
from edge_runtime.spec import AdapterSpec, MethodSpec
from edge_runtime.units import format_bytes

INFERENCE = "inference"


def run(config: MemoryBenchConfig) -> list[dict]:
    config.validate()
    methods = [INFERENCE, *(config.methods or METHODS)]
    cells = (
        [
            (adapter, precision)
            for adapter in config.adapters
            for precision in (("fp32",) if adapter == "full" else config.precisions)
        ]
        if "torch" in config.backends
        else []
    )
    ort_cells = (
        [
            (precision, [m for m in methods if m == INFERENCE or m in ORT_METHODS or m in BACKPROP_METHODS])
            for precision in config.precisions
            if precision in ORT_PRECISIONS
        ]
        if "ort" in config.backends
        else []
    )
    settings = config.estimator
    rows: list[dict] = []
    total = len(cells) * len(methods) + sum(len(m) for _, m in ort_cells)
    with tqdm(total=total, desc="bench memory", disable=not config.progress) as bar:
        for adapter, precision in cells:
            work = Workload(
                AdapterSpec(config.model, config.task, precision, adapter, lora_r=config.lora_r),
                MethodSpec(settings=settings),
                batch=config.batch_size,
                seq_len=config.max_length,
                nan_guard=config.nan_guard,
            )
            inference_peak = None
            for method in methods:
                bar.set_postfix_str(f"{adapter} {precision} {method}")
                rows.append(_measured_row(config, _per_pass(config, work, method), method, inference_peak))
                inference_peak = inference_peak or rows[-1]["peak_bytes"]
                _write(config, rows)  # a long run's finished rows survive an interruption
                bar.update(1)
        for precision, ort_methods in ort_cells:
            graph = exported_graph(config.graphs, config.model, config.task, precision, config.lora_r)
            inference_peak = None
            for method in ort_methods:
                bar.update(1)
                if method in BACKPROP_METHODS and not backprop_trains(graph):
                    continue  # the artifacts API trains fp32 encoder graphs only
                bar.set_postfix_str(f"ort {precision} {method}")
                rows.append(_ort_row(config, graph, precision, method, inference_peak))
                inference_peak = inference_peak or rows[-1]["peak_bytes"]
                _write(config, rows)
    for model in config.project:
        for method in methods:
            work = Workload(
                AdapterSpec(model, config.task, config.project_precision, lora_r=config.lora_r),
                batch=config.batch_size,
                seq_len=config.max_length,
            )
            rows.append(_estimated_row(work, method))
    _write(config, rows)
    return rows


def _write(config: MemoryBenchConfig, rows: list[dict]) -> None:
    write_json(config, rows)


def _per_pass(config: MemoryBenchConfig, work: Workload, method: str) -> Workload:
    """The work with the perturbed copies per pass a method runs: as asked, else (none) as a run on
    this CPU would batch them; 1 for inference and backprop."""
    if method == INFERENCE:
        return work
    per_pass = copies_per_pass(
        method, work.method.settings.queries, "cpu", work.batch * work.seq_len, config.perturbations_per_pass
    )
    return replace(work, perturbations_per_pass=per_pass)


def _row(work: Workload, method: str) -> dict:
    if method == INFERENCE:
        estimate_bytes, components = inference_estimate(work), None
    else:
        est = estimate(work.with_method(method))
        estimate_bytes, components = est.total, est.as_dict()
    adapter = work.adapter
    return {
        "model": adapter.model,
        "method": method,
        "precision": adapter.precision,
        "adapter": adapter.kind,
        "batch_size": work.batch,
        "max_length": work.seq_len,
        "backend": "torch",
        "zo_restore": work.method.settings.zo_restore,
        "nan_guard": work.nan_guard,
        "perturbations_per_pass": work.perturbations_per_pass,
        "estimate_bytes": estimate_bytes,
        "estimate_components": components,
    }


def probe_in_fresh_process(probe: dict, module: str = "edge_runtime.bench.memory_probe") -> dict:
    """Run one probe measurement (see the probe module for the fields) in its own process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(probe["threads"]), "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-m", module, json.dumps(probe)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise UserError(f"memory probe failed for {probe}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measured_row(config: MemoryBenchConfig, work: Workload, method: str, inference_peak: int | None) -> dict:
    row = _row(work, method)
    if row["estimate_bytes"] > 0.8 * psutil.virtual_memory().available:
        return {
            **row,
            "peak_bytes": None,
            "inference_peak_bytes": inference_peak,
            "skipped": f"estimated {format_bytes(row['estimate_bytes'])} does not fit in free RAM",
        }
    adapter, settings = work.adapter, work.method.settings
    probe = {
        "model": adapter.model,
        "task": adapter.dataset,
        "method": method,
        "precision": adapter.precision,
        "adapter": adapter.kind,
        "batch_size": work.batch,
        "max_length": work.seq_len,
        "lora_r": adapter.lora_r,
        "steps": config.steps,
        "threads": config.threads,
        **asdict(settings),
        "nan_guard": work.nan_guard,
        "perturbations_per_pass": work.perturbations_per_pass,
    }
    measured = probe_in_fresh_process(probe)
    peak = measured["peak_bytes"]
    inference_peak = inference_peak if inference_peak is not None else peak
    return {
        **row,
        "peak_bytes": peak,
        "inference_peak_bytes": inference_peak,
        "measured_seq_len": measured["seq_len"],
        "runtime_bytes": measured["runtime_bytes"],
        "ratio_to_inference": peak / inference_peak,
        "estimate_error": row["estimate_bytes"] / peak - 1,
    }


def _ort_row(config: MemoryBenchConfig, graph: Path, precision: str, method: str, inference_peak: int | None) -> dict:
    """A measured row of the exported graph on onnxruntime (no estimate: the memory model follows
    PyTorch's tensors, not ORT's arena)."""
    probe = {
        "graph": str(graph),
        "task": config.task,
        "method": method,
        "batch_size": config.batch_size,
        "max_length": config.max_length,
        "steps": config.steps,
        "threads": config.threads,
        "artifacts": str(training_artifacts(graph)) if method in BACKPROP_METHODS else None,
    }
    measured = probe_in_fresh_process(probe, "edge_runtime.bench.ort_probe")
    peak = measured["peak_bytes"]
    inference_peak = inference_peak if inference_peak is not None else peak
    return {
        "model": config.model,
        "method": method,
        "precision": precision,
        "adapter": "lora",
        "batch_size": config.batch_size,
        "max_length": config.max_length,
        "backend": "ort",
        "graph_bytes": graph_bytes(graph),
        "estimate_bytes": None,
        "peak_bytes": peak,
        "inference_peak_bytes": inference_peak,
        "measured_seq_len": measured["seq_len"],
        "runtime_bytes": measured["runtime_bytes"],
        "torch_loaded": measured["torch_loaded"],
        "ratio_to_inference": peak / inference_peak,
    }


def _estimated_row(work: Workload, method: str) -> dict:
    try:
        row = _row(work, method)
    except PassNotSimulated as error:  # a pass transformers cannot run for this architecture/precision
        return {
            **_row(work, INFERENCE),
            "method": method,
            "estimate_bytes": None,
            "peak_bytes": None,
            "projected": True,
            "error": str(error).splitlines()[0],
        }
    return {
        **row,
        "peak_bytes": None,
        "inference_peak_bytes": inference_estimate(work),
        "projected": True,
        "ratio_to_inference": row["estimate_bytes"] / inference_estimate(work),
    }


def table(rows: list[dict]) -> str:
    """Markdown table of the rows (the README's)."""
    lines = [
        "| model | backend | adapter | precision | method | peak | x inference | estimate | error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lead = f"| {r['model']} | {r.get('backend', 'torch')} | {r['adapter']} | {r['precision']} | {r['method']}"
        if r.get("error"):
            lines.append(f"{lead} | projected | | failed: {r['error'][:60]} | |")
            continue
        peak = "projected" if r.get("projected") else (format_bytes(r["peak_bytes"]) if r["peak_bytes"] else "skipped")
        error = f"{r['estimate_error']:+.1%}" if r.get("estimate_error") is not None else ""
        estimate = format_bytes(r["estimate_bytes"]) if r["estimate_bytes"] is not None else ""
        lines.append(f"{lead} | {peak} | {r['ratio_to_inference']:.2f} | {estimate} | {error} |")
    return "\n".join(lines)
