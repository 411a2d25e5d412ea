"""LoRA in the top layers only, with the frozen layers below kept per example: the same losses, scores
and derivatives as running the whole model, each sequence's bottom run once, and the adapter still
a plain peft adapter."""

import json

import pytest
import torch
from peft import PeftModel

from edge_runtime.errors import UserError
from edge_runtime.models import apply_lora, load_model
from edge_runtime.models.frozen_bottom import keep_frozen_bottom
from edge_runtime.objective import Objective
from edge_runtime.tasks import load_split
from edge_runtime.training.trainer import build_run, fit
from tests.test_training import tiny_config
from tests.tiny_objectives import tiny_llama_lora


def everything_it_computes(objective: Objective, batch) -> dict[str, torch.Tensor]:
    primals = {name: p.detach() for name, p in objective.params.items()}
    gen = torch.Generator().manual_seed(1)
    tangents = {name: torch.randn(p.shape, generator=gen) for name, p in primals.items()}
    points = {
        name: torch.stack([p, p + 0.01 * tangents[name], p - 0.01 * tangents[name]]) for name, p in primals.items()
    }
    with torch.no_grad():
        loss = objective.loss(batch)
    _, derivative = objective.jvp(batch, primals, tangents)
    return {
        "scores": objective.scores(batch),
        "loss": loss,
        "losses_at": objective.losses_at(points, batch),
        "jvp": derivative,
    }


def test_lora_layers_put_adapters_in_the_top_layers_only():
    objective = tiny_llama_lora(layers=1)
    assert objective.params and all(".layers.1." in name for name in objective.params)
    with pytest.raises(UserError, match="between 1 and the model's 2 layers"):
        apply_lora(load_model("tiny-llama"), layers=3)


@pytest.mark.parametrize("adapter", ["prefix", "full"])
def test_lora_layers_with_another_adapter_is_refused_in_one_line(tmp_path, adapter):
    with pytest.raises(UserError, match=f"does not apply to adapter '{adapter}'"):
        tiny_config(tmp_path, adapter=adapter, lora_layers=1).validate()


def test_kept_bottom_gives_what_the_whole_model_gives_and_runs_each_sequence_once():
    objective = tiny_llama_lora(layers=1)
    examples = load_split("sst2", "train")[:6]  # reviews of different lengths: rows are padded differently
    batch = objective.head.encode(examples)
    whole = everything_it_computes(objective, batch)
    frozen = keep_frozen_bottom(objective.module, "llama", trained_layers=1, max_bytes=2**30)
    assert frozen is not None and frozen.split == 1
    kept = everything_it_computes(objective, batch)
    for name in whole:
        torch.testing.assert_close(kept[name], whole[name], rtol=1e-5, atol=1e-6, msg=name)
    assert frozen.computed == len(examples) == len(frozen.kept)  # later passes read what was kept
    # The same sequence in another batch (other padding) is read from what was kept, and scores the same.
    regrouped = objective.head.encode(examples[2:3] + load_split("sst2", "train")[6:8])
    with_kept = objective.scores(regrouped)
    frozen.remove()
    torch.testing.assert_close(with_kept, objective.scores(regrouped), rtol=1e-5, atol=1e-6)
    assert frozen.computed == len(examples) + 2


def test_over_its_memory_the_bottom_is_recomputed_with_the_same_result():
    objective = tiny_llama_lora(layers=1)
    batch = objective.head.encode(load_split("sst2", "train")[:4])
    whole = objective.scores(batch)
    frozen = keep_frozen_bottom(objective.module, "llama", trained_layers=1, max_bytes=1)
    torch.testing.assert_close(objective.scores(batch), whole, rtol=1e-5, atol=1e-6)
    objective.scores(batch)
    assert not frozen.kept and frozen.computed == 8


def test_nothing_is_kept_where_a_trained_tensor_sits_below_the_top_layers_or_the_family_is_not_known():
    loaded = load_model("tiny-llama")
    every_layer = apply_lora(loaded, r=2, alpha=4)
    assert keep_frozen_bottom(every_layer, "llama", trained_layers=1, max_bytes=2**30) is None
    assert keep_frozen_bottom(tiny_llama_lora(layers=1).module, "gemma", trained_layers=1, max_bytes=2**30) is None


def test_a_run_with_lora_layers_keeps_the_bottom_and_saves_a_plain_peft_adapter(tmp_path):
    run = build_run(
        tiny_config(tmp_path, model="tiny-llama", method="zo-sgd", lora_layers=1, steps=6, k_shot=4, eval_examples=8)
    )
    summary = fit(run)
    cache = summary["bottom_cache"]
    # 8 training and 8 dev examples, and calibration's content-free prompts; each run through the bottom once.
    assert cache["frozen_layers"] == 1 and cache["computed_sequences"] == cache["kept_sequences"] >= 16
    adapter = tmp_path / "run" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["layers_to_transform"] == [1]
    base = load_model("tiny-llama", seed=run.config.seed).model
    reloaded = PeftModel.from_pretrained(base, str(adapter)).eval()
    batch = run.objective.head.encode(run.train[:4])
    run.frozen_bottom.remove()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch.inputs).logits, run.peft_model(**batch.inputs).logits)


def test_an_encoder_trains_its_top_layers_without_a_kept_bottom(tmp_path):
    run = build_run(tiny_config(tmp_path, model="tiny-bert", method="zo-sgd", lora_layers=1, steps=2))
    assert run.frozen_bottom is None
    lora = [name for name in run.objective.params if "lora_" in name]
    assert lora and all(".layer.1." in name for name in lora)


def test_bottom_cache_none_keeps_nothing(tmp_path):
    run = build_run(tiny_config(tmp_path, model="tiny-llama", method="zo-sgd", lora_layers=1, bottom_cache=None))
    assert run.frozen_bottom is None
    assert all(".layers.1." in name for name in run.objective.params)


def test_calls_it_cannot_serve_run_the_whole_model():
    objective = tiny_llama_lora(layers=1)
    inputs = objective.head.encode(load_split("sst2", "train")[:3]).inputs
    right_padded = {name: value.flip(-1) for name, value in inputs.items()}
    calls = [
        dict(input_ids=inputs["input_ids"]),  # implicit positions
        dict(inputs, use_cache=True),  # generation
        right_padded,
    ]
    with torch.no_grad():
        whole = [objective.module(**call).logits for call in calls]
        frozen = keep_frozen_bottom(objective.module, "llama", trained_layers=1, max_bytes=2**30)
        served = [objective.module(**call).logits for call in calls]
    assert frozen.computed == 0
    for expected, got in zip(whole, served):
        torch.testing.assert_close(got, expected)
