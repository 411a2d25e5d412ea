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
    from edge_runtime.tasks import get_task, load_split
    from tests.tiny_objectives import tiny_llama_lora

    objective = tiny_llama_lora()
    batch = objective.head.encode(load_split("sst2", "train")[:4])
    return objective, batch, get_task("sst2")


@pytest.fixture(scope="session")
def exported_graph(tmp_path_factory):
    """`edgetune export-graph` folders by (model, precision), each written once per session through
    the CLI; tests read them and write anything of their own elsewhere."""
    from edge_runtime.cli import main

    folders = {}

    def folder_for(model: str, precision: str = "fp32"):
        if (model, precision) not in folders:
            folder = tmp_path_factory.mktemp(f"{model}-{precision}")
            main(["export-graph", model, "--precision", precision, "--out", str(folder)])
            folders[(model, precision)] = folder
        return folders[(model, precision)]

    return folder_for
