"""LoRA-FA: each LoRA A stays at its seeded start and only B trains (half the numbers a ZO step
perturbs); the saved adapter still reloads in plain peft."""

import pytest
import torch
from peft import PeftModel

from edge_runtime.errors import UserError
from edge_runtime.models import apply_lora, load_model
from edge_runtime.training.trainer import build_run, fit
from tests.test_training import tiny_config


def test_lora_fa_trains_b_only_and_keeps_a_at_its_seeded_start(tmp_path):
    run = build_run(tiny_config(tmp_path, model="tiny-llama", method="zo-sgd", lora_fa=True, steps=6, lr=1e-2))
    every = apply_lora(load_model("tiny-llama", seed=run.config.seed))
    trained, initial = set(run.objective.params), dict(every.named_parameters())
    assert trained == {name for name in initial if ".lora_B." in name}
    fit(run)
    module = dict(run.peft_model.named_parameters())
    for name, param in initial.items():
        if ".lora_A." in name:
            torch.testing.assert_close(module[name], param, rtol=0, atol=0)
    assert any(not torch.equal(module[name], initial[name]) for name in trained)
    base = load_model("tiny-llama", seed=run.config.seed).model
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter")).eval()
    batch = run.objective.head.encode(run.train[:4])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch.inputs).logits, run.peft_model(**batch.inputs).logits)


@pytest.mark.parametrize("adapter", ["prefix", "full"])
def test_lora_fa_with_another_adapter_is_refused_in_one_line(tmp_path, adapter):
    with pytest.raises(UserError, match=f"lora_fa shapes LoRA adapters; it does not apply to adapter '{adapter}'"):
        tiny_config(tmp_path, adapter=adapter, lora_fa=True).validate()
