"""The settings a training method reads, importing neither torch nor onnxruntime: the PyTorch
estimators, the ONNX Runtime methods and the coordinator all take them from here, so none of
them can drift on a default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Restore = Literal["snapshot", "inplace"]
# ZO-Bench's variance reductions (edge_runtime.estimators.subspaces): what a block is, how a sparse
# query picks its coordinates.
BlockGrouping = Literal["layer", "tensor"]
SparseSelection = Literal["random", "magnitude"]
# The methods a device on the ONNX Runtime backend trains with (edge_runtime/ort/methods.py): forward
# passes of its graph only. The coordinator plans by it, so it lives here, importing neither runtime.
ONNX_RUNTIME_METHODS: tuple[str, ...] = ("zo-sgd", "zo-sgd-sign", "zo-sgd-mmt", "zo-sgd-cons", "zo-adam")


@dataclass(frozen=True)
class EstimatorSettings:
    """The hyper-parameters methods read; the trainer fills it from the run's config."""

    mu: float = 1e-2
    queries: int = 1
    grad_clip: float | None = None
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    zo_restore: Restore = "snapshot"
    zo_blocks: BlockGrouping = "layer"
    zo_density: float = 0.25
    zo_sparse_selection: SparseSelection = "magnitude"
