"""An emulated device's memory: the memory model for what it holds (the base at its precision,
the whole adapter, the runtime) plus what its steps really allocate (measured on the shared model
by the tensor tracker), held against the device's cap. The base is shared by every emulated
device in the process, yet billed to each, since a real device holds its own."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from edge_runtime.agent.agent import TaskRefused
from edge_runtime.local.torch_model import TorchModel
from edge_runtime.local.work import LocalResult
from edge_runtime.memory import MemoryEstimate, Workload, estimate
from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import adapter_of, method_of
from edge_runtime.tasks import Example
from edge_runtime.units import format_bytes


@functools.lru_cache(maxsize=256)
def _estimate(work: Workload) -> MemoryEstimate:
    return estimate(work)


def workload_of(task: pb.Task, batch: int, perturbations_per_pass: int = 1) -> Workload:
    adapter = adapter_of(task)
    return Workload(
        adapter,
        method_of(task),
        batch=batch,
        seq_len=adapter.max_length,
        nan_guard=False,
        perturbations_per_pass=perturbations_per_pass,
    )


def predicted_bytes(
    task: pb.Task, batch: int, trained_elements: int, perturbations_per_pass: int = 1
) -> tuple[int, int]:
    """(held bytes: base + adapter + runtime, predicted peak) for a task at a micro-batch."""
    est = _estimate(workload_of(task, batch, perturbations_per_pass))
    held = est.weights + est.adapters + est.runtime
    per_element = (est.optimizer_state + est.tangents + est.gradients) / max(est.adapters // 4, 1)
    return held, int(held + est.activations + per_element * trained_elements)


def predicted_activations(task: pb.Task, batch: int) -> int:
    """Bytes one pass of the task's step allocates at a micro-batch, by the memory model."""
    return _estimate(workload_of(task, batch)).activations


# (method, micro-batch, queries, copies per pass, trained elements) -> (padded length, tensor peak) of the first step
# that ran it. Tracking every op costs many times the step itself, so the first device to run a kind
# of step measures it and later devices reuse the figure, scaled up when their batch is longer (what
# a step allocates depends on how many elements it trains, not on which).
_MEASURED: dict[tuple, tuple[int, int]] = {}


@dataclass
class AccountedModel:
    """The shared model as one device sees it: refuses what would not fit the device's cap, runs
    the largest micro-batch that fits, and records the accounted peak of every task."""

    model: TorchModel
    cap: int
    peaks: list[int]

    def shapes(self):
        return self.model.shapes()

    def load_state(self, state):
        self.model.load_state(state)

    def statistics(self, task: pb.Task, examples: Sequence[Example]) -> LocalResult:
        """Forward passes only, at inference memory: what any device that can train can afford."""
        return self.model.statistics(task, examples)

    def train(self, task: pb.Task, examples: Sequence[Example]) -> LocalResult:
        trained = sum(int(np.prod(self.model.params[n].shape)) for n in task.tensors)
        micro, per_pass = task.batch_size, self.model.copies_per_pass(task)
        held, peak = predicted_bytes(task, micro, trained, per_pass)
        if peak > self.cap and per_pass > 1:  # examples before perturbed copies, as the memory planner does
            per_pass = 1
            held, peak = predicted_bytes(task, micro, trained)
        while peak > self.cap and micro > 1:
            micro //= 2
            held, peak = predicted_bytes(task, micro, trained)
        if peak > self.cap:
            raise TaskRefused(
                f"the task needs {format_bytes(peak)} at micro-batch 1, the device's cap is {format_bytes(self.cap)}"
            )
        method = method_of(task)
        key = (method.name, micro, method.settings.queries, per_pass, trained)
        self.model.micro_batch = micro if micro < task.batch_size else None
        self.model.perturbations_per_pass = per_pass
        try:
            result = self.model.train(task, examples, measure_first_step=key not in _MEASURED)
        finally:
            self.model.micro_batch = self.model.perturbations_per_pass = None
        if key not in _MEASURED and result.steps:
            _MEASURED[key] = (result.seq_lens[0], result.step_peak_bytes)
        length, step_peak = _MEASURED.get(key, (1, 0))
        if result.seq_lens:
            step_peak = int(step_peak * max(1.0, result.seq_lens[0] / length))
        accounted = held + step_peak
        self.peaks.append(accounted)
        if accounted > self.cap:  # the real device would have been killed: nothing to deliver
            return replace(
                result,
                steps=0,
                stopped=f"accounted peak {format_bytes(accounted)} crossed the cap {format_bytes(self.cap)}",
            )
        return result
