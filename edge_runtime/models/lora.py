"""Wrap a loaded model with LoRA adapters: the only trainable weights (plus an encoder's new head)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import peft
import torch
from peft import LoraConfig, TaskType, get_peft_model
from peft.utils.other import ModulesToSaveWrapper
from transformers.pytorch_utils import Conv1D

from edge_runtime.errors import UserError
from edge_runtime.models.families import default_lora_targets
from edge_runtime.models.loader import LoadedModel

# Layer types LoRA can wrap in the models this runtime loads (Conv1D: GPT-2 style projections).
_LORA_LAYER_TYPES = (torch.nn.Linear, Conv1D)


def apply_lora(
    loaded: LoadedModel,
    *,
    r: int = 8,
    alpha: int = 16,
    targets: Sequence[str] | None = None,
    layers: int | None = None,
    train_a: bool = True,
) -> peft.PeftModel:
    """Inject LoRA into ``loaded.model`` (in place) and return the PEFT wrapper, in eval() mode.

    Trainable afterwards: the LoRA A/B matrices and, for encoders, the classification head; all of
    them fp32 even when the base is fp16/bf16, because ZO perturbations vanish in half precision.
    With `layers`, LoRA goes into the top `layers` transformer layers only (peft's
    layers_to_transform, which the saved adapter's config carries). Without `train_a` (LoRA-FA) each A
    keeps its seeded start, is saved with the adapter, and only B trains.
    """
    target_names = tuple(targets) if targets else default_lora_targets(loaded.family)
    _check_targets_exist(loaded.model, target_names)
    # For sequence classification peft trains (and saves) the module named `classifier` itself.
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=list(target_names),
        lora_dropout=0.0,
        task_type=task_type(loaded),
        layers_to_transform=None if layers is None else top_layers(loaded, layers),
    )
    model = wrap_for_training(loaded, config)
    if not train_a:
        for name, param in model.named_parameters():
            if ".lora_A." in name:
                param.requires_grad_(False)
    return model


def top_layers(loaded: LoadedModel, layers: int) -> list[int]:
    """The indices of the top `layers` transformer layers of the loaded model."""
    total = loaded.model.config.num_hidden_layers
    if not 1 <= layers <= total:
        raise UserError(f"lora_layers must be between 1 and the model's {total} layers, got {layers}")
    return list(range(total - layers, total))


def task_type(loaded: LoadedModel) -> TaskType:
    return TaskType.SEQ_CLS if loaded.kind == "encoder" else TaskType.CAUSAL_LM


def wrap_for_training(loaded: LoadedModel, config: peft.PeftConfig) -> peft.PeftModel:
    """peft's wrapper around ``loaded.model`` with an encoder's new head in fp32, in eval() mode."""
    with warnings.catch_warnings():
        # peft 0.21 still reads transformers' deprecated `is_gradient_checkpointing`.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        model = get_peft_model(loaded.model, config, autocast_adapter_dtype=True)
    for wrapper in model.modules():
        if isinstance(wrapper, ModulesToSaveWrapper):
            _make_fp32(wrapper.modules_to_save[wrapper.active_adapters[0]])
    model.eval()
    return model


def _check_targets_exist(model: torch.nn.Module, targets: Sequence[str]) -> None:
    """Fail with the layer names that do exist, instead of peft's long error."""
    # peft matches a plain name against the full module name or its last dotted components.
    lora_layers = [name for name, module in model.named_modules() if isinstance(module, _LORA_LAYER_TYPES)]
    unmatched = [
        target for target in targets if not any(name == target or name.endswith(f".{target}") for name in lora_layers)
    ]
    if unmatched:
        layer_names = sorted({name.rsplit(".", 1)[-1] for name in lora_layers})
        raise UserError(
            f"no linear layer of {type(model).__name__} matches the LoRA target(s) {', '.join(unmatched)}; "
            f"its linear layers are named: {', '.join(layer_names[:12])}"
        )


def _make_fp32(head: torch.nn.Module) -> None:
    head.float()
    # The body may run in half precision; feed its features to the fp32 head in fp32.
    head.register_forward_pre_hook(_inputs_to_fp32, with_kwargs=True)


def _inputs_to_fp32(
    _module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    def to_fp32(value: Any) -> Any:
        return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    return tuple(to_fp32(arg) for arg in args), {key: to_fp32(value) for key, value in kwargs.items()}
