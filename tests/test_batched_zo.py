"""Two-point ZO with its perturbed copies through the model in one batched pass: the same scalars,
the same update and the same uploads as one copy at a time, on encoders and decoders, LoRA and prefixes."""

from dataclasses import replace

import pytest
import torch

from edge_runtime.estimators import EstimatorSettings, build_method
from edge_runtime.estimators.subspaces import Blocks
from edge_runtime.estimators.zo import TwoPointZO
from edge_runtime.heads import head_for
from edge_runtime.models import load_model
from edge_runtime.models.precision import prepare_model
from edge_runtime.objective import Objective
from edge_runtime.tasks import load_split


def objective_for(model: str, adapter: str, precision: str = "fp32") -> tuple[Objective, object]:
    loaded = load_model(model, num_labels=2, seed=0)
    module = prepare_model(loaded, adapter=adapter, precision=precision, r=2, alpha=4, prefix_tokens=3)
    objective = Objective(module, head_for(loaded.kind, loaded.tokenizer, "classification", max_length=32))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-zero LoRA B, so every direction moves the loss
        for name, p in objective.params.items():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return objective, objective.head.encode(load_split("sst2", "train")[:4])


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-bert"])
@pytest.mark.parametrize("adapter", ["lora", "prefix"])
@pytest.mark.parametrize("queries,per_pass", [(1, 2), (3, 6), (3, 4)])
def test_batched_and_one_at_a_time_give_the_same_scalars_and_update(model, adapter, queries, per_pass):
    results = {}
    for k in (1, per_pass):
        objective, batch = objective_for(model, adapter)
        objective.perturbations_per_pass = k
        method = build_method("zo-sgd", EstimatorSettings(mu=1e-2, queries=queries))
        step = method.step(objective, batch, lr=1e-2, seed=11)
        results[k] = step, {n: p.detach().clone() for n, p in objective.params.items()}
    (sequential, after_sequential), (batched, after_batched) = results[1], results[per_pass]
    assert batched.seeds == sequential.seeds
    assert batched.forward_passes == sequential.forward_passes == 2 * queries
    # The perturbed points are bit-identical; only the passes' reduction order differs.
    assert batched.scalars == pytest.approx(sequential.scalars, rel=1e-3, abs=1e-4)
    assert batched.loss == pytest.approx(sequential.loss, rel=1e-5)
    for name, p in after_sequential.items():
        torch.testing.assert_close(after_batched[name], p, rtol=1e-5, atol=1e-6)


def test_the_batched_pass_leaves_the_parameters_untouched():
    objective, batch = objective_for("tiny-llama", "lora")
    before = {n: p.detach().clone() for n, p in objective.params.items()}
    objective.perturbations_per_pass = 4
    TwoPointZO(mu=1e-2, queries=2).estimate(objective, batch, seed=5)
    for name, p in objective.params.items():
        assert torch.equal(p, before[name]), name


def test_a_subspace_restricts_the_batched_perturbations_too():
    scalars = {}
    for k in (1, 2):
        objective, batch = objective_for("tiny-llama", "lora")
        objective.perturbations_per_pass = k
        scalars[k] = TwoPointZO(mu=1e-2, queries=2, subspace=Blocks("layer")).estimate(objective, batch, seed=3).scalars
    assert scalars[2] == pytest.approx(scalars[1], rel=1e-3, abs=1e-4)


def test_an_int8_base_runs_batched():
    scalars = {}
    for k in (1, 2):
        objective, batch = objective_for("tiny-llama", "lora", precision="int8")
        objective.perturbations_per_pass = k
        scalars[k] = TwoPointZO(mu=1e-2, queries=1).estimate(objective, batch, seed=3).scalars
    assert scalars[2] == pytest.approx(scalars[1], rel=1e-3, abs=1e-4)


def test_a_model_that_cannot_run_batched_falls_back_with_one_line(monkeypatch):
    objective, batch = objective_for("tiny-llama", "lora")
    expected = TwoPointZO(mu=1e-2, queries=2).estimate(objective, batch, seed=7).scalars

    def no_batching_rule(points, batch):
        raise RuntimeError("Batching rule not implemented for aten::something")

    monkeypatch.setattr(objective, "losses_at", no_batching_rule)
    objective.perturbations_per_pass = 4
    with pytest.warns(RuntimeWarning, match="perturbations per pass 4 -> 1"):
        scalars = TwoPointZO(mu=1e-2, queries=2).estimate(objective, batch, seed=7).scalars
    assert scalars == expected and objective.perturbations_per_pass == 1


def test_copies_go_together_where_a_pass_is_bound_by_reading_weights():
    from edge_runtime.pass_batching import CPU_BATCHED_TOKENS, default_perturbations_per_pass

    zo = CPU_BATCHED_TOKENS["forward"]
    assert default_perturbations_per_pass("forward", 4, "cuda", 16 * 512) == 8  # the weights read once for all
    assert default_perturbations_per_pass("forward", 4, "cpu", 128) == 8  # one 128-token example: 1,024 tokens
    assert default_perturbations_per_pass("forward", 4, "cpu", 4 * 128) == zo // 512 == 2
    assert default_perturbations_per_pass("forward", 1, "cpu", zo // 2) == 2
    assert default_perturbations_per_pass("forward", 1, "cpu", zo // 2 + 1) == 1  # compute-bound
    # Forward-Grad batches its q tangents, and a jvp pays over more tokens.
    assert default_perturbations_per_pass("jvp", 4, "cpu", 4 * 128) == 4
    assert default_perturbations_per_pass("jvp", 4, "cuda", 16 * 512) == 4
    assert default_perturbations_per_pass("backward", 4, "cuda", 128) == 1


def test_a_training_run_with_batched_copies_trains_as_one_with_copies_one_at_a_time(tmp_path):
    from safetensors.torch import load_file

    from edge_runtime.training.trainer import train
    from tests.test_training import tiny_config

    summaries, adapters = {}, {}
    for k in (1, 2):
        config = tiny_config(tmp_path / str(k), method="zo-sgd", steps=10, lr=1e-3, perturbations_per_pass=k)
        summaries[k] = train(config)
        adapters[k] = load_file(str(tmp_path / str(k) / "run" / "checkpoint" / "trainable.safetensors"))
    assert (summaries[1]["perturbations_per_pass"], summaries[2]["perturbations_per_pass"]) == (1, 2)
    assert summaries[2]["forward_passes"] == summaries[1]["forward_passes"]
    for name, value in adapters[1].items():
        torch.testing.assert_close(adapters[2][name], value, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-bert"])
def test_forward_grad_tangents_in_one_vmapped_jvp_give_the_same_derivatives(model):
    results = {}
    for k in (1, 3):
        objective, batch = objective_for(model, "lora")
        objective.perturbations_per_pass = k
        method = build_method("forward-grad", EstimatorSettings(queries=3))
        step = method.step(objective, batch, lr=1e-2, seed=5)
        results[k] = step, {n: p.detach().clone() for n, p in objective.params.items()}
    (one, after_one), (batched, after_batched) = results[1], results[3]
    assert batched.seeds == one.seeds and batched.forward_passes == one.forward_passes == 3
    assert batched.scalars == pytest.approx(one.scalars, rel=1e-4, abs=1e-6)
    for name, p in after_one.items():
        torch.testing.assert_close(after_batched[name], p, rtol=1e-5, atol=1e-7)


def test_a_batched_forward_grad_step_allocates_what_the_estimate_says():
    from edge_runtime.bench.examples import long_examples
    from edge_runtime.memory import Workload, estimate
    from edge_runtime.memory.tracker import LiveBytes
    from edge_runtime.spec import AdapterSpec, MethodSpec

    loaded = load_model("tiny-llama")
    module = prepare_model(loaded)
    spec, examples = long_examples("sst2", 4)
    objective = Objective(module, head_for(loaded.kind, loaded.tokenizer, spec.kind, 64), perturbations_per_pass=4)
    batch = objective.encode(examples)
    with LiveBytes() as tracked:
        build_method("forward-grad", EstimatorSettings(queries=4)).step(objective, batch, 1e-6, 0)
    work = Workload(AdapterSpec("tiny-llama"), MethodSpec("forward-grad"), batch=4, seq_len=64, nan_guard=False)
    est = estimate(replace(work, perturbations_per_pass=4))
    predicted = est.total - est.weights - est.adapters - est.runtime
    one = estimate(work)
    # Real CPU kernels materialise some all-zero tangents that stay symbolic on meta (see test_memory).
    assert predicted <= tracked.peak <= 1.3 * predicted
    assert est.tangents == 4 * one.tangents and est.activations > one.activations
