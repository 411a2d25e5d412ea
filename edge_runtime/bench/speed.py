"""`edgetune bench speed`: time per training step of each method, beside its physical floor.

The floor is one forward pass of the same model on the same batch, measured in the same process
right before: two-point ZO cannot beat 2 of them, ZO-SGD-Cons 5, and Forward-Grad's jvp carries
a tangent through every op. Times are medians over repeats after a warm-up, so the ratios hold
on a noisy machine even when the seconds do not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from edge_runtime.bench.examples import long_examples
from edge_runtime.bench.graphs import backprop_trains, exported_graph, training_artifacts
from edge_runtime.bench.results import write_json
from edge_runtime.bench.speed_config import SpeedBenchConfig
from edge_runtime.estimators import METHODS, EstimatorSettings, build_method
from edge_runtime.heads import head_for
from edge_runtime.models import load_model
from edge_runtime.models.precision import load_dtype, prepare_model
from edge_runtime.objective import Objective
from edge_runtime.ort.backprop import BACKPROP_METHODS
from edge_runtime.ort.methods import METHODS as ORT_METHODS

FORWARD = "forward"
LORA_R = 8  # both backends time the same adapter shape


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
    spec, examples = long_examples(config.task, config.batch_size)
    methods = list(config.methods or METHODS)
    ort_methods = [m for m in methods if m in ORT_METHODS or m in BACKPROP_METHODS]
    torch_steps = _variants(config, methods, config.zo_passes)
    ort_steps = _variants(config, ort_methods, config.zo_passes)
    total = ("torch" in config.backends) * (len(torch_steps) + 1) + ("ort" in config.backends) * (len(ort_steps) + 1)
    rows = []
    with tqdm(total=total, desc="bench speed", disable=not config.progress) as bar:
        if "torch" in config.backends:
            rows += _timed(config, "torch", config.precision, *_torch_steps(config, spec, examples, torch_steps), bar)
        if "ort" in config.backends:
            rows += _timed(config, "ort", config.ort_precision, *_ort_steps(config, examples, ort_steps), bar)
    write_json(config, rows)
    return rows


@dataclass(frozen=True)
class Variant:
    """One timed row: a method, and for ZO and Forward-Grad its queries and whether its perturbed copies
    (tangents) go through one at a time or together."""

    method: str
    queries: int = 1
    zo_pass: str = ""  # sequential or batched; empty for the rows of other methods

    @property
    def perturbations_per_pass(self) -> int:
        return METHODS[self.method].estimate_passes(self.queries) if self.zo_pass == "batched" else 1

    def settings(self) -> EstimatorSettings:
        return EstimatorSettings(queries=self.queries)

    def fields(self) -> dict:
        return {"method": self.method, "queries": self.queries, "zo_pass": self.zo_pass}


def _variants(config: SpeedBenchConfig, methods: list[str], zo_passes: tuple[str, ...]) -> list[Variant]:
    def batches(method: str) -> bool:
        return METHODS[method].pass_kind != "backward" and not METHODS[method].backprop_part

    return [
        Variant(m, q, mode) if batches(m) else Variant(m)
        for m in methods
        for q in (config.queries if batches(m) else (1,))
        for mode in (zo_passes if batches(m) else ("",))
    ]


Steps = tuple[int, Callable[[], object], list[tuple[Variant, Callable[[], object]]]]


def _torch_steps(config: SpeedBenchConfig, spec, examples, variants: list[Variant]) -> Steps:
    """(sequence length, one forward, one step of each variant) on the eager model."""
    torch.set_num_threads(config.threads)
    loaded = load_model(config.model, num_labels=spec.num_labels, dtype=load_dtype(config.precision))
    module = prepare_model(loaded, precision=config.precision, r=LORA_R, alpha=2 * LORA_R).to(config.device)
    objective = Objective(module, head_for(loaded.kind, loaded.tokenizer, spec.kind, config.max_length))
    batch = objective.encode(examples).to(config.device)
    seeds = iter(range(10**9))

    def forward() -> None:
        with torch.no_grad():
            objective.loss(batch).item()  # .item(): a CUDA pass is timed to its end

    def stepper(variant: Variant) -> Callable[[], object]:
        method = build_method(variant.method, variant.settings())

        def step():
            objective.perturbations_per_pass = variant.perturbations_per_pass
            return method.step(objective, batch, 1e-9, next(seeds))

        return step

    return int(batch.inputs["input_ids"].shape[1]), forward, [(v, stepper(v)) for v in variants]


def _ort_steps(config: SpeedBenchConfig, examples, variants: list[Variant]) -> Steps:
    """The same on the exported graph in an onnxruntime session."""
    from edge_runtime.ort.backprop import OrtBackprop
    from edge_runtime.ort.methods import build_method as build_ort_method
    from edge_runtime.ort.session import GraphObjective

    graph = exported_graph(config.graphs, config.model, config.task, config.ort_precision, LORA_R)
    objective = GraphObjective(graph, threads=config.threads)
    batch = objective.encoding.encode(examples, config.max_length)
    seeds = iter(range(10**9))

    def stepper(variant: Variant) -> Callable[[], object]:
        if variant.method in BACKPROP_METHODS:
            backprop = OrtBackprop(training_artifacts(graph), objective.manifest, lr=1e-9)
            return lambda: backprop.step(batch)
        method = build_ort_method(variant.method, variant.settings())

        def step():
            objective.perturbations_per_pass = variant.perturbations_per_pass
            return method.step(objective, objective.params, batch, 1e-9, next(seeds))

        return step

    # The artifacts API trains fp32 encoder graphs only; other graphs time their ZO methods alone.
    variants = [v for v in variants if v.method not in BACKPROP_METHODS or backprop_trains(graph)]
    return batch.length, lambda: objective.loss(batch), [(v, stepper(v)) for v in variants]


def _timed(
    config: SpeedBenchConfig,
    backend: str,
    precision: str,
    length: int,
    forward: Callable[[], object],
    steps: list[tuple[Variant, Callable[[], object]]],
    bar: tqdm,
) -> list[dict]:
    def row(variant: Variant, seconds: float) -> dict:
        return {
            "model": config.model,
            **variant.fields(),
            "precision": precision,
            "backend": backend,
            "device": config.device if backend == "torch" else "cpu",
            "batch_size": config.batch_size,
            "max_length": length,
            "threads": config.threads,
            "step_seconds": seconds,
            "forward_seconds": floor,
            "ratio_to_forward": seconds / floor,
        }

    floor = median_seconds(forward, config.repeats)
    rows = [row(Variant(FORWARD), floor)]
    bar.update(1)
    for variant, step in steps:
        bar.set_postfix_str(f"{backend} {variant.method} q{variant.queries} {variant.zo_pass}")
        rows.append(row(variant, median_seconds(step, config.repeats)))
        bar.update(1)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | backend | precision | batch | method | q | ZO passes | step | x one forward (same backend) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['precision']} | {r['batch_size']} | {r['method']} | "
            f"{r.get('queries', 1)} | {r.get('zo_pass') or '-'} | {r['step_seconds']:.3f} s | "
            f"{r['ratio_to_forward']:.2f} |"
        )
    return "\n".join(lines)
