"""What the runtime knows about each model family (``config.model_type``): its kind and LoRA targets."""

from __future__ import annotations

from typing import Literal

from edge_runtime.errors import UserError

ModelKind = Literal["encoder", "causal_lm"]

# Encoders get a sequence-classification head. They must be listed because the BERT-like
# families also appear in transformers' causal-LM mapping (as decoders), so the mapping alone
# cannot tell them apart from real decoders.
ENCODER_FAMILIES: frozenset[str] = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "mpnet"}
)

# The attention query/value projections, as in the LoRA paper and MeZO's LoRA runs.
_DEFAULT_LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "distilbert": ("q_lin", "v_lin"),
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "opt": ("q_proj", "v_proj"),
}


def kind_for_family(family: str) -> ModelKind:
    """Encoder or causal LM; a family that is neither cannot be trained by this runtime."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if family in ENCODER_FAMILIES:
        return "encoder"
    if family in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal_lm"
    raise UserError(
        f"model type {family!r} is neither a supported encoder ({', '.join(sorted(ENCODER_FAMILIES))}) "
        "nor a causal language model"
    )


def default_lora_targets(family: str) -> tuple[str, ...]:
    """The module names LoRA wraps when the caller names none."""
    try:
        return _DEFAULT_LORA_TARGETS[family]
    except KeyError:
        raise UserError(
            f"no default LoRA targets for model type {family!r} "
            f"(known: {', '.join(sorted(_DEFAULT_LORA_TARGETS))}); name the target modules explicitly"
        ) from None
