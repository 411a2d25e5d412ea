"""`edgetune bench warm-start`: how good a model is before any training, by forward passes only.

Encoders: the linear heads of warm_start/ (zero-shot label descriptions, class centroids, ridge)
solved from N labelled training examples, under the pooling the model was trained with and under
[CLS] pooling, scored on the dev set. Causal LMs: every prompt template of the task, uncalibrated
and under each calibration. These rows are the evidence for the defaults (tasks/templates.py,
warm_start/forward.py) and the "no-training start" every training curve is read against.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from edge_runtime.bench.results import write_results
from edge_runtime.bench.warm_start_config import WarmStartBenchConfig
from edge_runtime.heads import head_for
from edge_runtime.models import load_model
from edge_runtime.models.pooled_classifier import Pooling, pooled_classifier_in
from edge_runtime.models.precision import prepare_model
from edge_runtime.objective import Objective
from edge_runtime.tasks import get_task, load_split, subsample
from edge_runtime.tasks.templates import MEZO, TEMPLATES, prompt_template
from edge_runtime.warm_start.forward import centred_offsets, content_free_offsets, embeddings
from edge_runtime.warm_start.linear_head import HEAD_SOLVERS, ZERO_SHOT_TEMPERATURE, fit_head, zero_shot_head
from edge_runtime.warm_start.statistics import FeatureStatistics, StatisticsError


def run(config: WarmStartBenchConfig) -> list[dict]:
    config.validate()
    torch.set_num_threads(config.threads)
    rows: list[dict] = []
    cells = [(m, t) for m in config.models for t in config.tasks]
    for model, task in tqdm(cells, desc="bench warm-start", disable=not config.progress):
        loaded = load_model(model, num_labels=get_task(task).num_labels)
        module = prepare_model(loaded)
        spec = get_task(task)
        dev = subsample(load_split(task, "eval"), config.eval_examples, config.seed)
        train = subsample(
            load_split(task, "train"), max(max(config.labelled_examples), config.calibration_examples), config.seed
        )
        common = {"model": model, "task": task, "dev_examples": len(dev)}
        if loaded.kind == "encoder":
            head = head_for(loaded.kind, loaded.tokenizer, spec.kind, config.max_length)
            rows += [common | row for row in _encoder_rows(config, Objective(module, head), spec, train, dev)]
        else:
            rows += [common | row for row in _causal_rows(config, module, loaded, spec, train, dev)]
        write_results("warm-start", config, rows, table)
    return rows


def _encoder_rows(config: WarmStartBenchConfig, objective: Objective, spec, train, dev) -> list[dict]:
    model = pooled_classifier_in(objective.module)
    own = model.pooling
    candidates = len(dev[0].candidates) if spec.kind == "multiple_choice" else None
    rows = []
    for pooling_name in config.poolings:
        poolings = {"own": own, "mean": Pooling("mean", own.normalize), "cls": Pooling("cls", own.normalize)}
        model.pooling = poolings[pooling_name]
        started = time.perf_counter()
        train_x, train_y = _features(config, objective, train[: max(config.labelled_examples)])
        dev_x, dev_y = _features(config, objective, dev)
        seconds = time.perf_counter() - started
        pooling = {"pooling": model.pooling.mode, "normalized": model.pooling.normalize}
        if spec.label_descriptions and spec.kind == "classification":
            described = [replace(dev[0], text=d, label=i) for i, d in enumerate(spec.label_descriptions)]
            descriptions, _ = _features(config, objective, described)
            head = zero_shot_head(descriptions, ZERO_SHOT_TEMPERATURE)
            rows.append(
                pooling
                | {
                    "start": "zero-shot",
                    "labelled": 0,
                    "temperature": head.temperature,
                    **_scored(head, dev_x, dev_y, None),
                    "feature_seconds": seconds,
                }
            )
        for solver in HEAD_SOLVERS:
            for size in config.labelled_examples:
                stats = _stats(train_x, train_y, size, candidates)
                try:
                    head = fit_head(stats, solver, candidates=candidates)
                except StatisticsError as error:
                    rows.append(pooling | {"start": solver, "labelled": size, "skipped": str(error)})
                    continue
                rows.append(
                    pooling
                    | {
                        "start": solver,
                        "labelled": size,
                        "temperature": head.temperature,
                        **_scored(head, dev_x, dev_y, candidates),
                        "feature_seconds": seconds,
                    }
                )
    model.pooling = own
    return rows


def _features(config, objective, examples) -> tuple[np.ndarray, np.ndarray]:
    """Pooled embeddings and labels, one row per example (per candidate pair for multiple choice)."""
    xs, ys = [], []
    for start in range(0, len(examples), config.batch_size):
        part = examples[start : start + config.batch_size]
        xs.append(embeddings(objective, objective.head.encode(part)).double().numpy())
        ys += [ex.label for ex in part]
    return np.concatenate(xs), np.array(ys)


def _stats(x: np.ndarray, y: np.ndarray, size: int, candidates: int | None) -> FeatureStatistics:
    if candidates is None:
        stats = FeatureStatistics.empty(int(y.max()) + 1, x.shape[1])
        stats.add(x[:size], y[:size])
        return stats
    pairs = x[: size * candidates]
    labels = (np.arange(candidates)[None, :] == y[:size, None]).astype(int).reshape(-1)
    stats = FeatureStatistics.empty(2, x.shape[1])
    stats.add(pairs, labels)
    return stats


def _scored(head, x: np.ndarray, y: np.ndarray, candidates: int | None) -> dict:
    logits = head.temperature * (x @ head.weight.T + head.bias)
    if candidates is not None:
        logits = logits.reshape(-1, candidates)
    return _accuracy(logits, y)


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> dict:
    shifted = scores - scores.max(1, keepdims=True)
    loss = float((np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(labels)), labels]).mean())
    accuracy = float((scores.argmax(1) == labels).mean())
    return {
        "accuracy": accuracy,
        "stderr": math.sqrt(accuracy * (1 - accuracy) / len(labels)),
        "loss": loss,
        "positive_rate": float((scores.argmax(1) == 1).mean()),
    }


def _causal_rows(config: WarmStartBenchConfig, module, loaded, spec, train, dev) -> list[dict]:
    rows = []
    for name in TEMPLATES.get(spec.name, {MEZO: None}):
        template = prompt_template(spec, name, calibration="none")
        objective = Objective(module, head_for(loaded.kind, loaded.tokenizer, spec.kind, config.max_length, template))
        started = time.perf_counter()
        dev_scores = _raw_scores(config, objective, dev)
        labels = np.array([ex.label for ex in dev])
        seconds = time.perf_counter() - started
        rows.append(
            {"start": f"prompt {name}", "calibration": "none", **_accuracy(dev_scores, labels), "dev_seconds": seconds}
        )
        if spec.kind != "classification":
            continue
        # Called within this iteration, so the closures read this iteration's objective.
        cpu = torch.device("cpu")
        calibrations = {
            "centred": lambda: centred_offsets(objective, train[: config.calibration_examples], config.batch_size, cpu)  # noqa: B023
        }
        if template.prompt is not None:
            calibrations["content-free"] = lambda: content_free_offsets(objective, dev[0], cpu)  # noqa: B023
        for calibration, offsets in calibrations.items():
            rows.append(
                {"start": f"prompt {name}", "calibration": calibration, **_accuracy(dev_scores - offsets(), labels)}
            )
    return rows


def _raw_scores(config, objective: Objective, examples) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(examples), config.batch_size):
            batch = objective.head.encode(examples[start : start + config.batch_size])
            out.append(objective.head.raw_scores(objective.module, batch).double().numpy())
    return np.concatenate(out)


def table(rows: list[dict]) -> str:
    lines = [
        "| model | task | start | pooling / calibration | labelled | dev acc (+- se) | dev loss | temperature |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        how = r.get("calibration") or f"{r['pooling']}{' + L2' if r.get('normalized') else ''}"
        if r.get("skipped"):
            lines.append(
                f"| {r['model']} | {r['task']} | {r['start']} | {how} | {r.get('labelled', '')} | "
                f"skipped: {r['skipped']} | | |"
            )
            continue
        temperature = f"{r['temperature']:.3g}" if r.get("temperature") else ""
        lines.append(
            f"| {r['model']} | {r['task']} | {r['start']} | {how} | {r.get('labelled', '')} | "
            f"{r['accuracy']:.3f} +- {r['stderr']:.3f} | {r['loss']:.3f} | {temperature} |"
        )
    return "\n".join(lines)
