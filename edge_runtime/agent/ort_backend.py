"""A device's model held in ONNX Runtime: the exported graph of `edgetune export-graph`, trained
with the zeroth-order methods on numpy adapters. Imports no torch, so a device needs only
onnxruntime, numpy, tokenizers and the wire protocol."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edge_runtime.agent.agent import TaskRefused
from edge_runtime.agent.work import LocalResult, run_local_steps
from edge_runtime.estimation import EstimatorSettings
from edge_runtime.ort.methods import METHODS, build_method
from edge_runtime.ort.session import GraphObjective
from edge_runtime.protocol import pb
from edge_runtime.tasks import Example


class OrtModel:
    def __init__(self, graph_dir: str | Path, threads: int = 1) -> None:
        self.objective = GraphObjective(graph_dir, threads=threads)
        self.manifest = self.objective.manifest

    def check(self, task: pb.Task) -> None:
        """Refuses a task for another model, task or LoRA shape than the graph's, or for a method that
        needs more than forward passes. The base's precision is the device's choice (its graph's):
        adapters are fp32 on every precision, so an int8 device trains a coordinator's fp32 task."""
        if task.method not in METHODS:
            raise TaskRefused(f"{task.method} needs PyTorch; this ONNX Runtime device trains with {', '.join(METHODS)}")
        m = self.manifest
        want = {"model": (task.model, m.model), "task": (task.task, m.task), "lora_r": (task.lora_r, m.lora_r),
                "lora_alpha": (task.lora_alpha, m.lora_alpha)}
        wrong = [f"{key} {asked!r} (the graph has {have!r})" for key, (asked, have) in want.items() if asked != have]
        if wrong:
            raise TaskRefused(f"the exported graph does not fit the task: {', '.join(wrong)}")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return self.objective.shapes()

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.objective.load(state)

    def train(self, task: pb.Task, examples: Sequence[Example]) -> LocalResult:
        """Train the task's tensors from the loaded state; the state is loaded again afterwards."""
        started = time.perf_counter()
        params = {name: self.objective.params[name] for name in task.tensors}
        start = {name: p.copy() for name, p in params.items()}
        method = build_method(task.method, EstimatorSettings(mu=task.mu, queries=task.queries))
        result = run_local_steps(
            task, examples, lambda ex: self.objective.encoding.encode(ex, task.max_length),
            lambda batch, _, seed: method.step(self.objective, params, batch, task.lr, seed),
            lambda batch: batch.length)
        result.deltas = {name: p - start[name] for name, p in params.items()}
        self.objective.load(start)
        result.seconds = time.perf_counter() - started
        return result
