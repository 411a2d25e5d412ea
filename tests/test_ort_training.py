"""ZO training on an exported ONNX graph follows the PyTorch backend step for step: the same
batches, the same directions, the same losses and updates (fp32 graph), for every ZO method."""

import dataclasses

import numpy as np
import pytest
import torch

from edge_runtime.agent.agent import TaskRefused
from edge_runtime.agent.ort_backend import OrtModel
from edge_runtime.estimators.base import SeedScalarEstimate
from edge_runtime.estimators.update_rules import SGD as TorchSGD
from edge_runtime.estimators.update_rules import Adam as TorchAdam
from edge_runtime.estimators.update_rules import Momentum as TorchMomentum
from edge_runtime.local.torch_model import TorchModel
from edge_runtime.ort import methods as ort_methods
from edge_runtime.ort.update_rules import SGD, Adam, Momentum
from edge_runtime.protocol import pb
from edge_runtime.spec import AdapterSpec, EstimatorSettings, MethodSpec
from edge_runtime.tasks import load_split
from tests.federation import wire_task


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-bert"])
def graph_and_model(request, exported_graph):
    folder = exported_graph(request.param)
    torch_model = TorchModel(AdapterSpec(request.param, "sst2", max_length=32))
    # Non-zero B matrices: every direction then moves the loss (B = 0 makes A's gradient zero).
    generator = np.random.default_rng(0)
    state = {
        name: (v + 0.05 * generator.standard_normal(v.shape)).astype(np.float32)
        for name, v in torch_model.state().items()
    }
    return folder, torch_model, state


def _task(model: str, method: str, tensors, **adapter) -> pb.Task:
    spec = AdapterSpec(**{"model": model, "dataset": "sst2", "max_length": 32, **adapter})
    return wire_task(
        spec,
        MethodSpec(method, EstimatorSettings(mu=1e-2, queries=2)),
        steps=3,
        batch_size=4,
        lr=1e-2,
        seed=7,
        tensors=list(tensors),
    )


@pytest.mark.parametrize("method", list(ort_methods.METHODS))
def test_ort_steps_match_torch_steps(graph_and_model, method):
    folder, torch_model, state = graph_and_model
    ort_model = OrtModel(folder)
    examples = load_split("sst2", "train")[:40]
    # A slice of the tensors, as the coordinator assigns: the rest must stay untouched.
    tensors = list(state)[: len(state) // 2 + 1]
    task = _task(torch_model.spec.model, method, tensors)
    if method == "zo-adam":
        # Adam's first step is lr * sign(g) per entry: with two queries an entry of g can cancel to
        # near zero, where the runtimes' last-bit differences flip its sign. One query cannot cancel.
        task.method.queries = 1
    torch_model.load_state(state)
    ort_model.load_state(state)
    want = torch_model.train(task, examples)
    got = ort_model.train(task, examples)
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.scalars, want.scalars, rtol=1e-3, atol=1e-4)
    assert got.seq_lens == want.seq_lens and got.examples == want.examples == 12
    assert set(got.deltas) == set(tensors)
    for name in tensors:
        # The two runtimes' kernels differ in the last bits of a loss; (L+ - L-) / 2mu magnifies that,
        # and Adam's normalisation more so where a gradient entry is near zero.
        scale = np.abs(want.deltas[name]).max()
        np.testing.assert_allclose(got.deltas[name], want.deltas[name], rtol=1e-3, atol=1e-2 * scale)
    assert any(np.abs(d).max() > 0 for d in got.deltas.values())
    for name, value in state.items():  # the device returns to the state it was given
        np.testing.assert_array_equal(ort_model.objective.params[name], value)


def test_ort_device_refuses_tasks_its_graph_cannot_train(graph_and_model):
    folder, torch_model, state = graph_and_model
    ort_model = OrtModel(folder)
    model = torch_model.spec.model
    for wrong in (
        _task(model, "forward-grad", state),
        _task(model, "fo-adam", state),
        _task(model, "zo-sgd", state, lora_r=4),
        _task(model, "zo-sgd", state, lora_layers=1),
        _task(model, "zo-sgd", state, lora_fa=True),
        _task(model, "zo-sgd", state, dataset="rte"),
        _task("other", "zo-sgd", state),
    ):
        with pytest.raises(TaskRefused):
            ort_model.check(wrong)
    ort_model.check(_task(model, "zo-adam", state))


@pytest.mark.parametrize(
    "rules",
    [(SGD(), TorchSGD()), (Momentum(0.9), TorchMomentum(0.9)), (Adam(0.9, 0.999, 1e-8), TorchAdam(0.9, 0.999, 1e-8))],
    ids=["sgd", "momentum", "adam"],
)
def test_numpy_update_rules_follow_the_torch_formulas(rules):
    numpy_rule, torch_rule = rules
    shapes = {"a": (3, 5), "b": (7,)}
    generator = np.random.default_rng(1)
    start = {n: generator.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    arrays = {n: v.copy() for n, v in start.items()}
    tensors = {n: torch.nn.Parameter(torch.from_numpy(v.copy())) for n, v in start.items()}
    for step in range(4):
        estimate = SeedScalarEstimate(0.0, 2, seeds=[step, 100 + step], scalars=[0.3 * step - 0.5, 1.7])
        numpy_rule.apply(ort_methods.gradients(arrays, dataclasses.replace(estimate)), lr=0.05)
        torch_rule.apply(tensors, estimate, lr=0.05)
    for name in shapes:
        assert not np.array_equal(arrays[name], start[name])
        np.testing.assert_allclose(arrays[name], tensors[name].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_ort_evaluation_matches_torch_across_batch_sizes(graph_and_model):
    folder, torch_model, state = graph_and_model
    ort_model = OrtModel(folder)
    torch_model.load_state(state)
    ort_model.load_state(state)
    examples = load_split("sst2", "eval")[:21]  # batches of 8, 8 and 5
    want = torch_model.evaluate(examples, batch_size=8)
    accuracy, loss = ort_model.objective.evaluate(examples, max_length=32, batch_size=8)
    assert accuracy == want.accuracy
    assert loss == pytest.approx(want.loss, rel=1e-5)


@pytest.mark.parametrize("queries", [1, 3])
def test_batched_ort_steps_match_one_copy_at_a_time(graph_and_model, queries):
    """The graph's perturbation axis: the 2q perturbed copies scored in one session call give the same
    scalars and the same update as one copy per call."""
    folder, torch_model, state = graph_and_model
    examples = load_split("sst2", "train")[:40]
    results = {}
    for per_pass in (1, 2 * queries):
        model = OrtModel(folder)
        model.load_state(state)
        method = ort_methods.build_method("zo-sgd", ort_methods.EstimatorSettings(mu=1e-2, queries=queries))
        model.objective.perturbations_per_pass = per_pass
        batch = model.objective.encoding.encode(examples[:4], 32)
        step = method.step(model.objective, model.objective.params, batch, 1e-2, 7)
        results[per_pass] = step, {n: p.copy() for n, p in model.objective.params.items()}
    (one, after_one), (batched, after_batched) = results[1], results[2 * queries]
    assert batched.seeds == one.seeds and batched.forward_passes == one.forward_passes == 2 * queries
    np.testing.assert_allclose(batched.scalars, one.scalars, rtol=1e-3, atol=1e-4)
    for name, value in after_one.items():
        np.testing.assert_allclose(after_batched[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_lowered_graphs_score_every_copy_as_its_own_pass(exported_graph, precision):
    model = OrtModel(exported_graph("tiny-llama", precision))
    objective = model.objective
    assert objective.manifest.perturbation_axis
    generator = np.random.default_rng(1)
    points = {
        n: np.stack([p + 0.05 * generator.standard_normal(p.shape).astype(np.float32) for _ in range(3)])
        for n, p in objective.params.items()
    }
    if precision == "int8":
        # Dynamic int8 quantizes each MatMul's input with one scale for the whole call, so copies in a
        # call share it: only identical copies score exactly as alone (hence int8 devices default to one
        # copy per call).
        points = {n: np.repeat(v[:1], 3, axis=0) for n, v in points.items()}
    batch = objective.encoding.encode(load_split("sst2", "train")[:4], 32)
    together = objective.losses_at(points, batch)
    for i, loss in enumerate(together):
        objective.load({n: v[i] for n, v in points.items()})
        assert loss == pytest.approx(objective.loss(batch), rel=1e-4)


def test_an_int8_device_scores_its_copies_one_per_call(exported_graph):
    model = OrtModel(exported_graph("tiny-bert", "int8"))
    task = _task("tiny-bert", "zo-sgd", list(model.objective.params))
    model.train(task, load_split("sst2", "train")[:12])
    assert model.objective.perturbations_per_pass == 1
    fp32 = OrtModel(exported_graph("tiny-bert"))
    fp32.train(task, load_split("sst2", "train")[:12])
    assert fp32.objective.perturbations_per_pass == 2 * task.method.queries  # 4 x 32 tokens: batching pays


def test_a_graph_without_a_perturbation_axis_is_scored_one_copy_per_call(exported_graph, tmp_path):
    """Graphs exported before the axis (their manifest has no such field): the device plans one copy per
    call, and asking for more says what to do."""
    import json
    import shutil

    from edge_runtime.errors import UserError

    folder = tmp_path / "old"
    shutil.copytree(exported_graph("tiny-bert"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["perturbation_axis"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    model = OrtModel(folder)
    assert not model.manifest.perturbation_axis
    assert model.copies_per_call(_task("tiny-bert", "zo-sgd", list(model.objective.params))) == 1
    with pytest.raises(UserError, match="no perturbation axis"):
        model.objective.losses_at(
            {n: p[None] for n, p in model.objective.params.items()},
            model.objective.encoding.encode(load_split("sst2", "train")[:2], 32),
        )
