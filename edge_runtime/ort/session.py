"""An exported graph as a function of its trainable numpy arrays: loss(adapters; batch).

The adapters are bound to the session once, by reference (an OrtValue over a CPU numpy array
shares its memory), so perturbing or updating them in place is all a step does to them: nothing
is copied into the session per pass. Only the batch is bound per step, once for all the passes
that share it. On a graph with a perturbation axis, `losses_at` scores many copies of the
adapters in one session call (two-point ZO's perturbed copies together).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_runtime.errors import UserError
from edge_runtime.ort.encoding import ArrayBatch, GraphEncoding, cross_entropy
from edge_runtime.ort.manifest import GRAPH_FILE, Manifest
from edge_runtime.tasks import Example

Adapters = dict[str, np.ndarray]


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Memory is what a device runs out of first. The CPU arena keeps every activation block it ever
    # allocated; without it MiniLM's ZO step peaked 23% lower (fp32 182 -> 140 MB, int8 110 -> 95 MB,
    # batch 8 x 128) for a forward about 5% slower (measured on the shared 2-core box, 2026-11-23).
    options.enable_cpu_mem_arena = False
    return options


class GraphObjective:
    """Holds the adapters (fp32 numpy, in the manifest's order) and evaluates the loss at them."""

    def __init__(self, folder: str | Path, threads: int = 1) -> None:
        self.manifest = Manifest.load(folder)
        self.encoding = GraphEncoding(folder, self.manifest)
        self.session = ort.InferenceSession(
            str(Path(folder) / GRAPH_FILE), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.params: Adapters = {t["name"]: np.zeros(t["shape"], dtype=np.float32) for t in self.manifest.trainable}
        self.binding = self.session.io_binding()
        # Kept alive here: the binding refers to these values' (= the arrays') memory; a graph with a
        # perturbation axis reads them as one copy (a view, so updates in place still reach it).
        self._views = {
            t["input"]: self.params[t["name"]][None] if self.manifest.perturbation_axis else self.params[t["name"]]
            for t in self.manifest.trainable
        }
        self._bound = {name: ort.OrtValue.ortvalue_from_numpy(view) for name, view in self._views.items()}
        for name, value in self._bound.items():
            self.binding.bind_ortvalue_input(name, value)
        self._batch: ArrayBatch | None = None
        # Two-point ZO's perturbed copies per session call (1: one at a time, in place).
        self.perturbations_per_pass = 1

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: p.shape for name, p in self.params.items()}

    def load(self, values: dict[str, np.ndarray]) -> None:
        for name, value in values.items():
            np.copyto(self.params[name], value)

    def _bind(self, batch: ArrayBatch) -> None:
        if self._batch is not batch:
            for name, value in batch.inputs.items():
                self.binding.bind_cpu_input(name, value)
            # A bound output keeps its first shape; a new batch may have another size.
            self.binding.bind_output(self.manifest.output, "cpu")
            if self.manifest.features_output:
                self.binding.bind_output(self.manifest.features_output, "cpu")
            self._batch = batch

    def scores(self, batch: ArrayBatch) -> np.ndarray:
        return self.encoding.scores(self._outputs(batch)[0])

    def raw_scores(self, batch: ArrayBatch) -> np.ndarray:
        """A causal LM's label-word scores before calibration (its warm start's statistics)."""
        return self.encoding.raw_scores(self._outputs(batch)[0])

    def features(self, batch: ArrayBatch) -> np.ndarray:
        """An encoder's pooled embeddings (its warm start's statistics); graphs exported since
        the features output exists have it."""
        if not self.manifest.features_output:
            raise UserError("this graph has no features output: export it again with `edgetune export-graph`")
        return self._outputs(batch)[1]

    def _outputs(self, batch: ArrayBatch) -> list[np.ndarray]:
        self._bind(batch)
        self.session.run_with_iobinding(self.binding)
        return [output.numpy() for output in self.binding.get_outputs()]

    def loss(self, batch: ArrayBatch) -> float:
        return cross_entropy(self.scores(batch), batch.labels)

    def losses_at(self, points: dict[str, np.ndarray], batch: ArrayBatch) -> list[float]:
        """The loss at P points in one session call: `points` holds each trainable tensor stacked P
        times along a new leading axis; the batch goes through tiled P times, copy p with point p."""
        if not self.manifest.perturbation_axis:
            raise UserError(
                "this graph has no perturbation axis: export it again with `edgetune export-graph` "
                "to batch ZO's perturbed copies"
            )
        copies = len(next(iter(points.values())))
        binding = self.session.io_binding()
        for name, value in batch.inputs.items():
            binding.bind_cpu_input(name, np.tile(value, (copies, 1)))
        for t in self.manifest.trainable:
            binding.bind_cpu_input(t["input"], np.ascontiguousarray(points[t["name"]], dtype=np.float32))
        binding.bind_output(self.manifest.output, "cpu")
        self.session.run_with_iobinding(binding)
        scores = self.encoding.scores(binding.get_outputs()[0].numpy())
        return [cross_entropy(block, batch.labels) for block in np.split(scores, copies)]

    def evaluate(self, examples: Sequence[Example], max_length: int, batch_size: int = 32) -> tuple[float, float]:
        """(accuracy, mean loss) of the current adapters, as `local.evaluation.evaluate` reports them."""
        correct, loss_sum = 0, 0.0
        for start in range(0, len(examples), batch_size):
            batch = self.encoding.encode(examples[start : start + batch_size], max_length)
            scores = self.scores(batch)
            correct += int((scores.argmax(-1) == batch.labels).sum())
            loss_sum += cross_entropy(scores, batch.labels, reduction="sum")
        return correct / len(examples), loss_sum / len(examples)
