"""Frozen base in fp16/bf16/int8 with fp32 adapters: int8 really stores int8, stays accurate, and
its gradients and tangents are those of the dequantized weights."""

import pytest
import torch

from edge_runtime.errors import UserError
from edge_runtime.memory.tracker import LiveBytes
from edge_runtime.models import load_model
from edge_runtime.models.int8 import CHUNK_BYTES, Int8Embedding, Int8Linear, quantize_frozen_
from edge_runtime.models.precision import load_dtype, prepare_model
from edge_runtime.training.trainer import train
from tests.test_training import tiny_config


def _dequantized(layer: Int8Linear) -> torch.Tensor:
    return layer.qweight.float() * layer.scale[:, None]


def test_int8_linear_is_close_to_fp32_and_stores_one_byte_per_weight():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 200)
    q = Int8Linear.from_linear(linear)
    x = torch.randn(4, 96)
    assert q.qweight.dtype == torch.int8 and q.qweight.shape == (200, 96)
    rel = (q(x) - linear(x)).norm() / linear(x).norm()
    assert rel < 0.01


def test_int8_linear_bounds_its_transient_to_one_chunk():
    # A vocabulary-sized projection: dequantizing it whole would allocate 4 x 8000 x 2048 bytes.
    q = Int8Linear.from_linear(torch.nn.Linear(2048, 8000, bias=False))
    with torch.no_grad(), LiveBytes() as tracked:
        q(torch.randn(2, 2048))
    whole = 4 * 8000 * 2048
    assert tracked.peak < CHUNK_BYTES + 4 * 2 * 8000 * 3 < whole


def test_int8_linear_gradient_and_tangent_are_those_of_the_dequantized_weight():
    torch.manual_seed(0)
    q = Int8Linear.from_linear(torch.nn.Linear(64, 300))
    q.chunk_rows = 70  # several chunks
    reference = lambda x: torch.nn.functional.linear(x, _dequantized(q), q.bias)  # noqa: E731
    x, v = torch.randn(3, 5, 64, requires_grad=True), torch.randn(3, 5, 64)
    (got,) = torch.autograd.grad(q(x).square().sum(), x)
    (want,) = torch.autograd.grad(reference(x).square().sum(), x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    _, got_t = torch.func.jvp(lambda x: q(x).square().sum(), (x.detach(),), (v,))
    _, want_t = torch.func.jvp(lambda x: reference(x).square().sum(), (x.detach(),), (v,))
    torch.testing.assert_close(got_t, want_t, rtol=1e-5, atol=1e-4)


def test_quantizing_keeps_a_tied_embedding_and_head_on_one_int8_table():
    embedding = torch.nn.Embedding(500, 32)
    head = torch.nn.Linear(32, 500, bias=False)
    head.weight = embedding.weight
    model = torch.nn.ModuleDict({"embed": embedding, "head": head}).requires_grad_(False)
    assert quantize_frozen_(model) == 2
    assert isinstance(model["embed"], Int8Embedding) and isinstance(model["head"], Int8Linear)
    assert model["embed"].qweight is model["head"].qweight
    ids = torch.tensor([[3, 7]])
    torch.testing.assert_close(model["embed"](ids), embedding(ids), rtol=0.02, atol=0.02)


@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8"])
def test_only_the_frozen_base_changes_precision(precision):
    loaded = load_model("tiny-llama", dtype=load_dtype(precision))
    fp32 = sum(p.numel() * p.element_size() for p in load_model("tiny-llama").model.parameters())
    model = prepare_model(loaded, precision=precision)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    base = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()] if not t.requires_grad)
    assert base < (0.3 if precision == "int8" else 0.55) * fp32


def test_full_fine_tuning_refuses_a_low_precision_base():
    with pytest.raises(UserError, match="full fine-tuning"):
        prepare_model(load_model("tiny-llama"), adapter="full", precision="int8")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_zo_training_on_a_low_precision_base_lowers_the_loss(tmp_path, precision):
    summary = train(tiny_config(tmp_path, model="tiny-llama", precision=precision, method="zo-sgd", steps=200, lr=1e-2))
    assert summary["stopped"] == "completed"
    assert summary["final_train_loss"] < summary["initial_train_loss"] - 0.01, summary


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_zo_perturbations_touch_only_the_fp32_adapters_and_restore_exactly(precision):
    from edge_runtime.estimators.zo import TwoPointZO
    from edge_runtime.heads import head_for
    from edge_runtime.objective import Objective
    from edge_runtime.tasks import load_split

    loaded = load_model("tiny-llama", dtype=load_dtype(precision))
    model = prepare_model(loaded, precision=precision)
    objective = Objective(model, head_for(loaded.kind, loaded.tokenizer, "classification", 32))
    frozen = {name: t.clone() for name, t in [*model.named_parameters(), *model.named_buffers()] if not t.requires_grad}
    before = {name: p.detach().clone() for name, p in objective.params.items()}
    estimate = TwoPointZO(mu=1e-2, queries=2).estimate(objective, objective.encode(load_split("sst2", "train")[:4]), 7)
    assert all(s != 0 for s in estimate.scalars)  # the perturbations did change the loss
    for name, p in objective.params.items():
        assert torch.equal(p, before[name]), name
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if name in frozen:
            assert torch.equal(t, frozen[name]), name
