"""What trains, declared once and importing neither torch nor onnxruntime: the model, its adapter
and the data it learns (`AdapterSpec`), and the method with every setting it reads (`MethodSpec`).

The memory model's workload, the coordinator's round shape, a device's model, an exported graph's
manifest and the fleet compose these instead of declaring the fields again; the wire protocol
carries them as messages of the same names (edge_runtime/protocol/specs.py), so a device builds its
method from the very settings the coordinator's replay of its seeds reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from edge_runtime.config import setting
from edge_runtime.errors import UserError

PRECISIONS = ("fp32", "fp16", "bf16", "int8")  # of the frozen base; the trainable tensors are always fp32
Precision = Literal[PRECISIONS]
ADAPTERS = ("lora", "prefix", "full")
AdapterKind = Literal[ADAPTERS]
Restore = Literal["snapshot", "inplace"]
# ZO-Bench's variance reductions (edge_runtime.estimators.subspaces): what a block is, how a sparse
# query picks its coordinates.
BlockGrouping = Literal["layer", "tensor"]
SparseSelection = Literal["random", "magnitude"]
# The methods a device on the ONNX Runtime backend trains with (edge_runtime/ort/methods.py): forward
# passes of its graph only. The coordinator plans by it, so it lives here, importing neither runtime.
ONNX_RUNTIME_METHODS: tuple[str, ...] = ("zo-sgd", "zo-sgd-sign", "zo-sgd-mmt", "zo-sgd-cons", "zo-adam")


@dataclass(frozen=True)
class AdapterSpec:
    """Everything that decides the shapes and the base of the trained model, which a coordinator
    and its devices must agree on."""

    model: str  # an alias (models/registry.py) or a local Hugging Face folder
    dataset: str = "sst2"  # the task by name (tasks/registry.py): its labels, and a causal LM's prompts
    precision: Precision = "fp32"  # of the frozen base; what trains is fp32 at every precision
    kind: AdapterKind = "lora"  # what trains: LoRA matrices, prefix tuning's prefixes, or every weight
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ()  # module names; empty = the family's default
    lora_layers: int | None = None  # LoRA in the top N transformer layers only; None = every layer
    lora_fa: bool = False  # LoRA-FA: each A stays at its seeded start and only B trains
    max_length: int = 128  # tokens per sequence
    init_seed: int = 0  # initialises LoRA A, an encoder's head, and a random test model's whole base
    prompt: str = "default"  # a causal LM's prompt template (tasks/templates.py) or a format string
    label_words: tuple[str, ...] = ()  # a causal LM's answer for each class, with a prompt of one's own


@dataclass(frozen=True)
class EstimatorSettings:
    """The hyper-parameters methods read. Each is a setting of every config that trains (a flag and
    a key, edge_runtime/config.py `group`), declared only here."""

    mu: float = setting("ZO perturbation scale (MeZO: 1e-2 for LoRA)", 1e-2)
    queries: int = setting("random directions per step (q)", 1)
    grad_clip: float | None = setting("ZO/Forward-Grad: bound on |projected gradient|; FO: bound on grad norm", None)
    momentum: float = setting("ZO-SGD-MMT momentum", 0.9)
    beta1: float = setting("Adam beta1", 0.9)
    beta2: float = setting("Adam beta2", 0.999)
    eps: float = setting("Adam epsilon", 1e-8)
    zo_restore: Restore = setting(
        "snapshot: bit-exact restore from a copy of the trainable params; inplace: MeZO's zero-copy cycle", "snapshot"
    )
    zo_blocks: BlockGrouping = setting("zo-sgd-block: a block is a layer or a single tensor", "layer")
    zo_density: float = setting("zo-sgd-sparse: fraction of each tensor's coordinates a query perturbs", 0.25)
    zo_sparse_selection: SparseSelection = setting(
        "zo-sgd-sparse: a random subset per query, or the smallest magnitudes (Sparse MeZO)", "magnitude"
    )

    def validate(self) -> None:
        """Refuse, as a UserError, settings no method can run with: mu finite and > 0, queries >= 1,
        grad_clip > 0 where set, zo_density in (0, 1]."""
        if not (math.isfinite(self.mu) and self.mu > 0):
            raise UserError(f"mu must be a positive number, got {self.mu}")
        if self.queries < 1:
            raise UserError(f"queries must be at least 1, got {self.queries}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise UserError(f"grad_clip must be positive, got {self.grad_clip}")
        if not 0 < self.zo_density <= 1:
            raise UserError(f"zo_density must be in (0, 1], got {self.zo_density}")


@dataclass(frozen=True)
class MethodSpec:
    """A training method by name (edge_runtime/estimators/registry.py) and the settings it reads."""

    name: str = "zo-sgd"
    settings: EstimatorSettings = EstimatorSettings()
