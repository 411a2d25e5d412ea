"""A device's model held in ONNX Runtime: the exported graph of `edgetune export-graph`, trained
with the zeroth-order methods on numpy adapters. Imports no torch, so a device needs only
onnxruntime, numpy, tokenizers and the wire protocol."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edge_runtime.agent.agent import TaskRefused
from edge_runtime.local.work import LocalResult, head_constants, run_local_steps
from edge_runtime.ort.methods import METHODS, build_method
from edge_runtime.ort.session import GraphObjective
from edge_runtime.pass_batching import default_perturbations_per_pass
from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import adapter_of, method_of
from edge_runtime.tasks import Example, get_task
from edge_runtime.tasks.templates import prompt_template
from edge_runtime.warm_start import FeatureStatistics, ScoreStatistics

STATISTICS_BATCH = 32


class OrtModel:
    def __init__(self, graph_dir: str | Path, threads: int = 1) -> None:
        self.objective = GraphObjective(graph_dir, threads=threads)
        self.manifest = self.objective.manifest

    def check(self, task: pb.Task) -> None:
        """Refuses a task for another model, task or LoRA shape than the graph's, or for a method that
        needs more than forward passes. The base's precision is the device's choice (its graph's):
        adapters are fp32 on every precision, so an int8 device trains a coordinator's fp32 task."""
        method = method_of(task).name
        if method not in METHODS:
            raise TaskRefused(f"{method} needs PyTorch; this ONNX Runtime device trains with {', '.join(METHODS)}")
        spec, graph = adapter_of(task), self.manifest.adapter
        want = {
            key: (getattr(spec, key), getattr(graph, key))
            for key in ("model", "dataset", "lora_r", "lora_alpha", "lora_layers", "lora_fa")
        }
        if self.manifest.template is not None:
            asked = prompt_template(get_task(spec.dataset), spec.prompt, spec.label_words)
            have = self.manifest.template
            want["prompt"] = ((asked.prompt, asked.candidates), (have["prompt"], tuple(have["candidates"] or ())))
        wrong = [f"{key} {asked!r} (the graph has {have!r})" for key, (asked, have) in want.items() if asked != have]
        if wrong:
            raise TaskRefused(f"the exported graph does not fit the task: {', '.join(wrong)}")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return self.objective.shapes()

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.objective.load(state)

    def statistics(self, task: pb.Task, examples: Sequence[Example]) -> LocalResult:
        """A STATISTICS task, as local/torch_model.py computes it, on the graph."""
        started = time.perf_counter()
        self.objective.encoding.constants = head_constants(task)
        examples = list(examples[: task.statistics_examples or len(examples)])
        max_length, stats = adapter_of(task).max_length, None
        for start in range(0, len(examples), STATISTICS_BATCH):
            batch = self.objective.encoding.encode(examples[start : start + STATISTICS_BATCH], max_length)
            if self.manifest.kind == "encoder":
                features = self.objective.features(batch)
                stats = stats or FeatureStatistics.empty(len(examples[0].candidates), features.shape[1])
                stats.add(features, batch.labels)
            else:
                scores = self.objective.raw_scores(batch)
                stats = stats or ScoreStatistics.empty(scores.shape[1])
                stats.add(scores)
        return LocalResult(
            deltas=stats.as_tensors(), scalars=[], examples=len(examples), seconds=time.perf_counter() - started
        )

    def copies_per_call(self, task: pb.Task) -> int:
        """Two-point ZO's perturbed copies per session call. One on a graph exported before the
        perturbation axis, and on an int8 graph, whose dynamic quantization scales each MatMul's
        input over the whole call: copies scored together would change each other's losses."""
        if not self.manifest.perturbation_axis or self.manifest.adapter.precision == "int8":
            return 1
        tokens = task.batch_size * adapter_of(task).max_length
        return default_perturbations_per_pass("forward", method_of(task).settings.queries, "cpu", tokens)

    def train(self, task: pb.Task, examples: Sequence[Example]) -> LocalResult:
        """Train the task's tensors from the loaded state; the state is loaded again afterwards."""
        started = time.perf_counter()
        self.objective.encoding.constants = head_constants(task)
        params = {name: self.objective.params[name] for name in task.tensors}
        start = {name: p.copy() for name, p in params.items()}
        spec = method_of(task)
        method = build_method(spec.name, spec.settings)
        max_length = adapter_of(task).max_length
        self.objective.perturbations_per_pass = self.copies_per_call(task)
        result = run_local_steps(
            task,
            examples,
            lambda ex: self.objective.encoding.encode(ex, max_length),
            lambda batch, _, seed: method.step(self.objective, params, batch, task.lr, seed),
            lambda batch: batch.length,
        )
        result.deltas = {name: p - start[name] for name, p in params.items()}
        self.objective.load(start)
        result.seconds = time.perf_counter() - started
        return result
