"""Precision of the frozen base, and the module a run trains.

The trainable tensors (LoRA A/B, an encoder's head, or every weight for full fine-tuning) are
always fp32: ZO perturbations of size mu ~ 1e-3 vanish or do not restore in half precision (MeZO
issue #42). Only the frozen base changes precision, so its rounding can never enter the
perturb/restore cycle.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edge_runtime.errors import UserError
from edge_runtime.models.int8 import quantize_frozen_
from edge_runtime.models.loader import LoadedModel
from edge_runtime.models.lora import apply_lora
from edge_runtime.models.prefix import apply_prefix
from edge_runtime.spec import ADAPTERS, PRECISIONS, AdapterKind, AdapterSpec, Precision

# int8 is loaded in fp32 and quantized after LoRA is in place (LoRA wraps nn.Linear layers).
_LOAD_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}


def load_dtype(precision: str) -> torch.dtype:
    check_precision(precision)
    return _LOAD_DTYPES[precision]


def check_precision(precision: str, adapter: str = "lora") -> None:
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if adapter not in ADAPTERS:
        raise UserError(f"unknown adapter {adapter!r}; choose one of: {', '.join(ADAPTERS)}")
    if adapter == "full" and precision != "fp32":
        raise UserError(
            f"full fine-tuning trains every weight in fp32, so it has no {precision} base; "
            "use precision fp32 or adapter lora"
        )


def prepare_model(
    loaded: LoadedModel,
    *,
    adapter: AdapterKind = "lora",
    precision: Precision = "fp32",
    r: int = 8,
    alpha: int = 16,
    targets: Sequence[str] | None = None,
    layers: int | None = None,
    train_a: bool = True,
    prefix_tokens: int = 5,
) -> nn.Module:
    """The module a run trains, from a model loaded with ``load_dtype(precision)``."""
    check_precision(precision, adapter)
    if adapter == "full":
        loaded.model.float().requires_grad_(True)
        return loaded.model
    if adapter == "prefix":
        model = apply_prefix(loaded, tokens=prefix_tokens)
    else:
        model = apply_lora(loaded, r=r, alpha=alpha, targets=targets, layers=layers, train_a=train_a)
    if precision == "int8":
        quantize_frozen_(model)
    return model


def prepare_for_spec(loaded: LoadedModel, spec: AdapterSpec, prefix_tokens: int = 5) -> nn.Module:
    """The module that trains what `spec` names, from its model loaded with ``load_dtype(spec.precision)``."""
    return prepare_model(
        loaded,
        adapter=spec.kind,
        precision=spec.precision,
        r=spec.lora_r,
        alpha=spec.lora_alpha,
        targets=spec.lora_targets or None,
        layers=spec.lora_layers,
        train_a=not spec.lora_fa,
        prefix_tokens=prefix_tokens,
    )
