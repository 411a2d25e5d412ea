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
from edge_runtime.local.torch_model import ModelSpec, TorchModel
from edge_runtime.ort import methods as ort_methods
from edge_runtime.ort.update_rules import SGD, Adam, Momentum
from edge_runtime.protocol import pb
from edge_runtime.tasks import load_split


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-bert"])
def graph_and_model(request, exported_graph):
    folder = exported_graph(request.param)
    torch_model = TorchModel(ModelSpec(request.param, "sst2", max_length=32))
    # Non-zero B matrices: every direction then moves the loss (B = 0 makes A's gradient zero).
    generator = np.random.default_rng(0)
    state = {name: (v + 0.05 * generator.standard_normal(v.shape)).astype(np.float32)
             for name, v in torch_model.state().items()}
    return folder, torch_model, state


def _fields(model: str, tensors) -> dict:
    return dict(model=model, task="sst2", method="zo-sgd", steps=3, batch_size=4, lr=1e-2, mu=1e-2, queries=2,
                seed=7, tensors=list(tensors), max_length=32, lora_r=8, lora_alpha=16)


def _task(model: str, method: str, tensors) -> pb.Task:
    return pb.Task(**{**_fields(model, tensors), "method": method})


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
        task.queries = 1
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
    for wrong in ({"method": "forward-grad"}, {"method": "fo-adam"}, {"lora_r": 4}, {"task": "rte"},
                  {"model": "other"}):
        with pytest.raises(TaskRefused):
            ort_model.check(pb.Task(**{**_fields(torch_model.spec.model, state), **wrong}))
    ort_model.check(_task(torch_model.spec.model, "zo-adam", state))


@pytest.mark.parametrize("rules", [(SGD(), TorchSGD()), (Momentum(0.9), TorchMomentum(0.9)),
                                   (Adam(0.9, 0.999, 1e-8), TorchAdam(0.9, 0.999, 1e-8))],
                         ids=["sgd", "momentum", "adam"])
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
