"""What trains, read from a task: the `AdapterSpec` and `MethodSpec` (edge_runtime/spec.py) the
coordinator asked for."""

from __future__ import annotations

from edge_runtime.protocol import pb
from edge_runtime.spec import AdapterSpec, EstimatorSettings, MethodSpec


def adapter_of(task: pb.Task) -> AdapterSpec:
    return AdapterSpec(task.model, task.task, task.precision or "fp32", lora_r=task.lora_r, lora_alpha=task.lora_alpha,
                       lora_targets=tuple(task.lora_targets), max_length=task.max_length,
                       prompt=task.prompt or "default", label_words=tuple(task.label_words))


def method_of(task: pb.Task) -> MethodSpec:
    return MethodSpec(task.method, EstimatorSettings(mu=task.mu, queries=task.queries))
