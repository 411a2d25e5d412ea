"""`edgetune bench speed`: time per training step of each method, beside its physical floor.

The floor is one forward pass of the same model on the same batch, measured in the same process
right before: two-point ZO cannot beat 2 of them, ZO-SGD-Cons 5, and Forward-Grad's jvp carries
a tangent through every op. Times are medians over repeats after a warm-up, so the ratios hold
on a noisy machine even when the seconds do not.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from edge_runtime.bench.memory_probe import long_examples
from edge_runtime.config import setting
from edge_runtime.errors import UserError
from edge_runtime.estimators import METHODS, EstimatorSettings, build_method
from edge_runtime.heads import head_for
from edge_runtime.models import load_model
from edge_runtime.models.precision import check_precision, load_dtype, prepare_model
from edge_runtime.objective import Objective

FORWARD = "forward"


@dataclass
class SpeedBenchConfig:
    model: str = setting("model to time", "smollm2-135m")
    task: str = setting("task whose examples fill the batch", "sst2")
    seq_len: int = setting("tokens per sequence", 128)
    batch: int = setting("examples per step", 8)
    precision: str = setting("base precision", "fp32")
    methods: tuple[str, ...] = setting("methods to time; empty = all", ())
    repeats: int = setting("timed repeats per method (median reported)", 3)
    threads: int = setting("torch threads", 2)
    out: str = setting("JSON file to write", "bench-speed.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        for name in ("seq_len", "batch", "repeats", "threads"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise UserError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        check_precision(self.precision)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: lazily built kernels and optimizer state
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def run(config: SpeedBenchConfig) -> list[dict]:
    config.validate()
    torch.set_num_threads(config.threads)
    spec, examples = long_examples(config.task, config.batch)
    loaded = load_model(config.model, num_labels=spec.num_labels, dtype=load_dtype(config.precision))
    module = prepare_model(loaded, precision=config.precision)
    objective = Objective(module, head_for(loaded.kind, loaded.tokenizer, spec.kind, config.seq_len))
    batch = objective.encode(examples)
    seq_len = int(batch.inputs["input_ids"].shape[1])

    def forward() -> None:
        with torch.no_grad():
            objective.loss(batch)

    rows = []
    methods = list(config.methods or METHODS)
    with tqdm(total=len(methods) + 1, desc="bench speed", disable=not config.progress) as bar:
        floor = median_seconds(forward, config.repeats)
        rows.append(_row(config, seq_len, FORWARD, floor, floor))
        bar.update(1)
        for name in methods:
            method = build_method(name, EstimatorSettings())
            step = iter(range(10**9))
            seconds = median_seconds(lambda: method.step(objective, batch, 1e-9, next(step)), config.repeats)
            rows.append(_row(config, seq_len, name, seconds, floor))
            bar.update(1)
    Path(config.out).parent.mkdir(parents=True, exist_ok=True)
    Path(config.out).write_text(json.dumps({"config": asdict(config), "rows": rows}, indent=2))
    return rows


def _row(config: SpeedBenchConfig, seq_len: int, method: str, seconds: float, floor: float) -> dict:
    return {"model": config.model, "method": method, "precision": config.precision, "backend": "torch",
            "batch": config.batch, "seq_len": seq_len, "threads": config.threads, "step_seconds": seconds,
            "forward_seconds": floor, "ratio_to_forward": seconds / floor}


def table(rows: list[dict]) -> str:
    lines = ["| model | precision | method | step | x one forward |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | {r['method']} | {r['step_seconds']:.3f} s | "
                     f"{r['ratio_to_forward']:.2f} |")
    return "\n".join(lines)
