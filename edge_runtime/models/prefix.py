"""Prefix tuning (Li & Liang 2021), the second adapter MeZO and ZO-Bench fine-tune.

A few trainable key/value vectors per layer are prepended to every attention (peft's
PrefixTuning, without the reparameterising MLP: MeZO trains the prefixes directly). The prefixes
stay fp32 whatever the base precision, for the same reason as LoRA's matrices: ZO perturbations
vanish in half precision. Encoders also train their classifier (peft's sequence classification adds it).
"""

from __future__ import annotations

import peft
from peft import PrefixTuningConfig

from edge_runtime.errors import UserError
from edge_runtime.models.loader import LoadedModel
from edge_runtime.models.lora import task_type, wrap_for_training


def apply_prefix(loaded: LoadedModel, *, tokens: int = 5) -> peft.PeftModel:
    if tokens < 1:
        raise UserError(f"prefix_tokens must be at least 1, got {tokens}")
    config = PrefixTuningConfig(
        task_type=task_type(loaded),
        num_virtual_tokens=tokens,
        prefix_projection=False,
    )
    model = wrap_for_training(loaded, config)
    model.prompt_encoder.float()
    return model
