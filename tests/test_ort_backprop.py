"""Backprop through onnxruntime-training's artifacts: PyTorch's gradients, and AdamW steps that learn."""

import numpy as np
import pytest
import torch

from edge_runtime.errors import UserError
from edge_runtime.local.torch_model import TorchModel
from edge_runtime.objective import Objective
from edge_runtime.ort.backprop import OrtBackprop
from edge_runtime.ort.encoding import GraphEncoding
from edge_runtime.ort.manifest import Manifest
from edge_runtime.spec import AdapterSpec
from edge_runtime.tasks import load_split


def test_ort_backprop_has_torchs_gradients_and_lowers_the_loss(tmp_path, exported_graph):
    graph = exported_graph("tiny-bert")
    torch_model = TorchModel(AdapterSpec("tiny-bert", "sst2", max_length=32))
    generator = np.random.default_rng(0)
    state = {
        n: (v + 0.05 * generator.standard_normal(v.shape)).astype(np.float32) for n, v in torch_model.state().items()
    }
    torch_model.load_state(state)
    examples = load_split("sst2", "train")[:8]
    objective = Objective(torch_model.module, torch_model.head, params=torch_model.params)
    with torch.enable_grad():
        want_loss = objective.backward(objective.encode(examples))

    backprop = OrtBackprop.from_graph(graph, tmp_path / "artifacts", state, lr=1e-2)
    manifest = Manifest.load(graph)
    batch = GraphEncoding(graph, manifest).encode(examples, 32)
    losses = [backprop.step(batch) for _ in range(4)]
    assert losses[0] == pytest.approx(want_loss, rel=1e-5)
    assert losses[-1] < losses[0] - 0.01
    # The gradients of the last step's loss at the adapters it started from, beside torch's there.
    backprop.module(*[batch.inputs[n] for n in manifest.inputs], batch.labels)
    torch_model.load_state(backprop.adapters())
    for p in torch_model.params.values():
        p.grad = None
    with torch.enable_grad():
        objective.backward(objective.encode(examples))
    for t in manifest.trainable:
        np.testing.assert_allclose(
            backprop.state.parameters[t["input"]].grad.reshape(t["shape"]),
            torch_model.params[t["name"]].grad.numpy(),
            rtol=1e-3,
            atol=1e-6,
        )


def test_ort_backprop_refuses_graphs_it_cannot_train(tmp_path, exported_graph):
    for graph in (exported_graph("tiny-llama"), exported_graph("tiny-llama", "int8")):
        with pytest.raises(UserError, match="fp32 encoder"):
            OrtBackprop.from_graph(graph, tmp_path / "artifacts", {}, lr=1e-3)
