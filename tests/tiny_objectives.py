"""A tiny causal LM with LoRA, as the estimator and layer tests need it."""

import torch

from edge_runtime.heads import head_for
from edge_runtime.models import apply_lora, load_model
from edge_runtime.objective import Objective


def tiny_llama_lora(layers: int | None = None) -> Objective:
    """tiny-llama with LoRA (in the top `layers` layers, or every layer) whose B matrices are non-zero,
    so the adapter changes what the model computes and every gradient entry is non-zero."""
    loaded = load_model("tiny-llama", seed=0)
    model = apply_lora(loaded, r=2, alpha=4, layers=layers)
    objective = Objective(model, head_for(loaded.kind, loaded.tokenizer, "classification", max_length=32))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in objective.params.items():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return objective
