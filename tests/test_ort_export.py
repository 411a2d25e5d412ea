"""The exported graph computes what the PyTorch model computes, for any LoRA values fed to it,
any batch size, length and padding."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edge_runtime.cli import main
from edge_runtime.heads import head_for
from edge_runtime.models import load_model
from edge_runtime.models.precision import prepare_model
from edge_runtime.objective import trainable_parameters
from edge_runtime.ort.export import _WithInputs
from edge_runtime.ort.manifest import GRAPH_FILE, MANIFEST_FILE
from edge_runtime.tasks import load_split


@pytest.mark.parametrize("model_name", ["tiny-llama", "tiny-bert"])
def test_graph_scores_match_torch_for_new_lora_values_and_shapes(exported_graph, model_name):
    tmp_path = exported_graph(model_name)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    session = ort.InferenceSession(str(tmp_path / GRAPH_FILE), providers=["CPUExecutionProvider"])
    loaded = load_model(model_name, num_labels=2)  # same seed: the same frozen base and head
    model = prepare_model(loaded)
    params = trainable_parameters(model)
    assert [t["name"] for t in manifest["trainable"]] == list(params)
    reference = _WithInputs(model, list(params), manifest["inputs"], loaded.kind == "causal_lm")
    head = head_for(loaded.kind, loaded.tokenizer, "classification", 64)
    generator = torch.Generator().manual_seed(1)
    # Two copies of the adapters along the perturbation axis: copy p scores block p of the tiled batch.
    copies = [
        [p.detach() + 0.05 * torch.randn(p.shape, generator=generator) for p in params.values()] for _ in range(2)
    ]
    for examples in (load_split("sst2", "eval")[:5], load_split("sst2", "train")[10:11]):
        batch = head.encode(examples)
        feed = {name: np.tile(batch.inputs[name].numpy(), (2, 1)) for name in manifest["inputs"]}
        feed.update({t["input"]: np.stack([c[i].numpy() for c in copies]) for i, t in enumerate(manifest["trainable"])})
        outputs = session.run(None, feed)
        for p, lora in enumerate(copies):
            with torch.no_grad():
                wanted = reference(*[batch.inputs[n] for n in manifest["inputs"]], *[x[None] for x in lora])
            # An encoder's graph also returns the pooled embedding its classifier reads.
            wanted = [wanted] if isinstance(wanted, torch.Tensor) else list(wanted)
            assert len(outputs) == len(wanted) == (2 if manifest["features_output"] else 1)
            for got, want in zip(outputs, wanted):
                block = np.split(got, 2)[p]
                assert block.shape == want.shape
                np.testing.assert_allclose(block, want.numpy(), rtol=1e-4, atol=1e-4)


def test_export_refuses_what_it_cannot_build_yet(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["export-graph", "tiny-llama", "--out", str(tmp_path), "--task", "copa"])
    assert refused.value.code == 2 and "classification" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_low_precision_graphs_lower_only_constant_matmuls_and_keep_lora_inputs_fp32(exported_graph, precision):
    import onnx

    folder = exported_graph("tiny-llama", precision)
    graph = onnx.load(str(folder / GRAPH_FILE)).graph
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    lora_inputs = {t["input"] for t in manifest["trainable"]}
    assert {i.name for i in graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT} >= lora_inputs
    lowered_ops = {"int8": "MatMulInteger", "fp16": "Cast"}[precision]
    # A LoRA matrix reaches its MatMul directly or through a Transpose (W^T per copy), never through a
    # quantizer or a cast; its Shape sizes the perturbation axis.
    lora_values = set(lora_inputs)
    for node in graph.node:
        if lora_values & set(node.input):
            assert node.op_type in ("MatMul", "Transpose", "Shape"), f"{node.op_type} reads a LoRA input"
            lora_values.update(node.output if node.op_type == "Transpose" else ())
    lowered = [n for n in graph.node if n.op_type == lowered_ops]
    assert len(lowered) >= 14  # the 7 projections of each of the 2 layers
    # Close to the fp32 graph on the same inputs, not equal (the base really changed).
    feed = {
        "input_ids": np.array([[1, 5, 9, 13, 2, 7]]),
        "attention_mask": np.ones((1, 6), dtype=np.int64),
        "position_ids": np.arange(6)[None],
    }
    generator = np.random.default_rng(0)
    feed.update(
        {t["input"]: 0.1 * generator.standard_normal([1, *t["shape"]], dtype=np.float32) for t in manifest["trainable"]}
    )
    run = lambda folder: ort.InferenceSession(str(folder / GRAPH_FILE)).run(None, feed)[0]  # noqa: E731
    low, full = run(folder), run(exported_graph("tiny-llama"))
    assert 0 < np.abs(low - full).max() < 0.05 * np.abs(full).max()
