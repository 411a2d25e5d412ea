import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Tests use tiny models, where one thread is fastest and immune to a busy second core.
torch.set_num_threads(1)


@pytest.fixture
def tiny_llama_objective():
    """A tiny causal LM with LoRA whose B matrices are non-zero, so every gradient entry is."""
    from edge_runtime.heads import head_for
    from edge_runtime.models import apply_lora, load_model
    from edge_runtime.objective import Objective
    from edge_runtime.tasks import get_task, load_split

    loaded = load_model("tiny-llama", seed=0)
    model = apply_lora(loaded, r=2, alpha=4)
    objective = Objective(model, head_for(loaded.kind, loaded.tokenizer, "classification", max_length=32))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in objective.params.items():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    batch = objective.head.encode(load_split("sst2", "train")[:4])
    return objective, batch, get_task("sst2")
