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
from edge_runtime.ort.export import GRAPH_FILE, MANIFEST_FILE, _WithInputs
from edge_runtime.tasks import load_split


@pytest.mark.parametrize("model_name", ["tiny-llama", "tiny-bert"])
def test_graph_scores_match_torch_for_new_lora_values_and_shapes(tmp_path, model_name):
    main(["export-graph", model_name, "--out", str(tmp_path)])
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    session = ort.InferenceSession(str(tmp_path / GRAPH_FILE), providers=["CPUExecutionProvider"])
    loaded = load_model(model_name, num_labels=2)  # same seed: the same frozen base and head
    model = prepare_model(loaded)
    params = trainable_parameters(model)
    assert [t["name"] for t in manifest["trainable"]] == list(params)
    reference = _WithInputs(model, list(params), manifest["inputs"], loaded.kind == "causal_lm")
    head = head_for(loaded.kind, loaded.tokenizer, "classification", 64)
    generator = torch.Generator().manual_seed(1)
    lora = [p.detach() + 0.05 * torch.randn(p.shape, generator=generator) for p in params.values()]
    for examples in (load_split("sst2", "eval")[:5], load_split("sst2", "train")[10:11]):
        batch = head.encode(examples)
        feed = {name: batch.inputs[name].numpy() for name in manifest["inputs"]}
        feed.update({t["input"]: x.numpy() for t, x in zip(manifest["trainable"], lora)})
        (scores,) = session.run(None, feed)
        with torch.no_grad():
            want = reference(*[batch.inputs[n] for n in manifest["inputs"]], *lora).numpy()
        assert scores.shape == want.shape
        np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-4)


def test_export_refuses_what_it_cannot_build_yet(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["export-graph", "tiny-llama", "--out", str(tmp_path), "--task", "copa"])
    assert refused.value.code == 2 and "classification" in capsys.readouterr().err
