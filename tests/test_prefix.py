"""Prefix tuning as the second adapter: fp32 prefixes that the model reads, trained by every method."""

import pytest
import torch

from edge_runtime.estimators import METHODS, EstimatorSettings, build_method
from edge_runtime.heads import head_for
from edge_runtime.models import load_model
from edge_runtime.models.precision import load_dtype, prepare_model
from edge_runtime.objective import Objective
from edge_runtime.tasks import load_split

PREFIX = "prompt_encoder"


def prefix_objective(model: str, precision: str = "fp32", tokens: int = 5):
    loaded = load_model(model, dtype=load_dtype(precision), seed=0)
    module = prepare_model(loaded, adapter="prefix", precision=precision, prefix_tokens=tokens)
    objective = Objective(module, head_for(loaded.kind, loaded.tokenizer, "classification", 32))
    return objective, objective.head.encode(load_split("sst2", "train")[:4])


@pytest.mark.parametrize("model, precision", [("tiny-llama", "fp32"), ("tiny-llama", "fp16"), ("tiny-bert", "fp32")])
def test_only_fp32_prefixes_and_an_encoders_head_train(model, precision):
    objective, _ = prefix_objective(model, precision, tokens=3)
    names = list(objective.params)
    prefixes = [n for n in names if PREFIX in n]
    assert len(prefixes) == 1 and objective.params[prefixes[0]].shape[0] == 3
    assert all(p.dtype == torch.float32 for p in objective.params.values())
    others = [n for n in names if PREFIX not in n]
    assert all("classifier" in n for n in others) and bool(others) == (model == "tiny-bert")


def test_the_model_reads_its_prefixes():
    objective, batch = prefix_objective("tiny-llama")
    before = objective.loss(batch).item()
    with torch.no_grad():
        objective.params[f"{PREFIX}.default.embedding.weight"].add_(1.0)
    assert objective.loss(batch).item() != pytest.approx(before, abs=1e-6)


@pytest.mark.parametrize("method", [m for m, info in METHODS.items() if not info.recomputes_blocks])
def test_every_method_trains_the_prefixes(method):
    objective, batch = prefix_objective("tiny-llama")
    prefix = objective.params[f"{PREFIX}.default.embedding.weight"]
    before = prefix.detach().clone()
    result = build_method(method, EstimatorSettings(mu=1e-1)).step(objective, batch, lr=1e-2, seed=1)
    assert torch.isfinite(torch.tensor(result.loss))
    assert not torch.equal(prefix, before)
