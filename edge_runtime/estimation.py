"""What the estimators of every backend share, importing neither torch nor onnxruntime: the
settings a method reads, what a step reports, and the checks on a step's scalars.

The PyTorch estimators (`edge_runtime.estimators`) and the numpy ones of the ONNX Runtime backend
(`edge_runtime.ort.methods`) both build on these, so the two cannot drift apart on a default or on
what counts as a failed step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Restore = Literal["snapshot", "inplace"]
# The methods a device on the ONNX Runtime backend trains with (edge_runtime/ort/methods.py): forward
# passes of its graph only. The coordinator plans by it, so it lives here, importing neither runtime.
ONNX_RUNTIME_METHODS: tuple[str, ...] = ("zo-sgd", "zo-sgd-sign", "zo-sgd-mmt", "zo-sgd-cons", "zo-adam")
# ZO-Bench's variance reductions (edge_runtime.estimators.subspaces): what a block is, how a sparse
# query picks its coordinates.
BlockGrouping = Literal["layer", "tensor"]
SparseSelection = Literal["random", "magnitude"]
_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def block_of(name: str, grouping: BlockGrouping) -> str:
    """The block a parameter belongs to: its layer (by index; a head is a block of its own) or itself."""
    found = _LAYER_INDEX.search(name) if grouping == "layer" else None
    return f"layer {found.group(1)}" if found else name


def blocks_of(names: Sequence[str], grouping: BlockGrouping) -> list[str]:
    """The blocks of the trained tensors, in their order: what a block-wise ZO query draws one of."""
    return list(dict.fromkeys(block_of(n, grouping) for n in names))


def chosen_block(blocks: Sequence[str], seed: int) -> str:
    """The block a query perturbs, from its seed alone (so the coordinator's replay draws it too)."""
    return blocks[seed % len(blocks)]


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


@dataclass
class StepResult:
    loss: float
    forward_passes: int
    # The (seed, scalar) pairs of this step when the method is seed-replayable, else empty.
    seeds: list[int] = field(default_factory=list)
    scalars: list[float] = field(default_factory=list)


class NonFiniteLoss(RuntimeError):
    """The loss or the estimate is NaN/Inf; no update was applied."""


def check_finite(loss: float, scalars: list[float] = ()) -> None:
    if not math.isfinite(loss) or not all(math.isfinite(s) for s in scalars):
        raise NonFiniteLoss(f"loss {loss}, projected gradients {list(scalars)}")


def clip_scalar(value: float, bound: float | None) -> float:
    return value if bound is None else max(-bound, min(bound, value))


def zo_scalar(g: float, *, clip: float | None, sign: bool) -> float:
    """The scalar a two-point query contributes: clipped, and for ZO-Bench's ZO-SGD-Sign its sign
    (of the scalar, not of g * z element-wise)."""
    g = clip_scalar(g, clip)
    return float((g > 0) - (g < 0)) if sign else g


# How many of a step's perturbed copies (two-point ZO's 2q, Forward-Grad's q tangents) go through
# one forward pass by default. Batching pays where a pass is bound by reading the weights, not by
# arithmetic: a GPU at device batch sizes, a CPU pass over few tokens. A CPU pass over many tokens
# is compute-bound: the copies then cost what sequential passes cost, and past a few thousand tokens
# more (activations fall out of cache). Measured on a 2-core CPU, MiniLM and SmolLM2, fp32 and int8,
# 128 tokens per example (`edgetune bench speed --zo-passes sequential,batched`,
# docs/benchmarks/batched-zo/): a batched ZO pass of at most 1,024 tokens took 0.63-1.13x
# the time of its copies one at a time (14 of 24 rows 0.9x or less), 1,025-4,096 tokens 0.82-1.12x,
# 16,384 tokens 1.26-2.07x; a jvp carries more per token than it reads, and 4 tangents of 512 tokens
# in one pass took 0.30-0.62x.
# A memory cap may lower the number (memory/planner.py).
CPU_BATCHED_TOKENS = {"forward": 1024, "jvp": 2048}  # the most tokens a batched CPU pass takes


def default_perturbations_per_pass(pass_kind: str, queries: int, device_type: str, tokens_per_pass: int) -> int:
    """All of a step's copies in one pass on a GPU; on a CPU as many as keep the pass within
    CPU_BATCHED_TOKENS, and 1 (one at a time) where not even two do or for backprop."""
    if pass_kind not in CPU_BATCHED_TOKENS:
        return 1
    copies = 2 * queries if pass_kind == "forward" else queries
    if device_type == "cuda":
        return copies
    return max(1, min(copies, CPU_BATCHED_TOKENS[pass_kind] // max(tokens_per_pass, 1)))
