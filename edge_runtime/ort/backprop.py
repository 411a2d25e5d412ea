"""Backprop on an exported graph with onnxruntime-training's artifacts API (generate_artifacts,
CheckpointState, Module, Optimizer): the first-order baseline, run on the same runtime as the
zeroth-order methods so that their memory and time compare within one benchmark.

It needs the workstation's `ort-training` extra and onnx; a device's plain onnxruntime has no
training API. Encoder graphs only (their output is the class logits, so onnxblock's
cross-entropy is the task's loss); a causal LM's loss over label-word log-probabilities would need
a custom loss block. The exported graph needs four repairs first, each for a limitation of the
artifacts builder of onnxruntime-training 1.19.2:

- the LoRA inputs become initializers holding the adapters given (only initializers train), as
  one copy along the perturbation axis where the graph has one;
- LayerNormalization gets its optional mean and inverse-std outputs, which the gradient builder
  reads (onnxruntime#19427);
- frozen weights that torch.onnx deduplicated into one initializer behind Identity nodes get a
  copy each (a shared weight's gradient is otherwise defined twice and the model is invalid);
- generated graphs carry onnx's newest IR version, which ORT 1.19 refuses; they use nothing
  newer than IR 10, so they are saved as that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edge_runtime.errors import UserError
from edge_runtime.ort.encoding import ArrayBatch
from edge_runtime.ort.manifest import GRAPH_FILE, Manifest

ORT_MAX_IR_VERSION = 10
# onnxblock's AdamW with weight decay 0 is Adam, except that (transformers-style) eps is added before
# the bias correction, i.e. eps / sqrt(1 - beta2^t) in torch.optim.Adam's terms: steps of gradient
# entries below ~1e-6 are smaller than torch's. Gradients themselves match torch's (tested).
BACKPROP_METHODS = ("fo-adam",)


def trainable_graph(graph_dir: str | Path, adapters: dict[str, np.ndarray]) -> onnx.ModelProto:
    manifest = Manifest.load(graph_dir)
    model = onnx.load(str(Path(graph_dir) / GRAPH_FILE))
    graph = model.graph
    # The loss reads the scores alone: an encoder graph's features output is for warm starts.
    kept_outputs = [o for o in graph.output if o.name == manifest.output]
    del graph.output[:]
    graph.output.extend(kept_outputs)
    lora = {
        t["input"]: adapters[t["name"]][None] if manifest.perturbation_axis else adapters[t["name"]]
        for t in manifest.trainable
    }
    kept = [i for i in graph.input if i.name not in lora]
    del graph.input[:]
    graph.input.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(value.astype(np.float32), name) for name, value in lora.items())
    initializers = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
            continue
        if node.op_type == "LayerNormalization" and len(node.output) == 1:
            node.output.extend([f"{node.name}.mean", f"{node.name}.inv_std_dev"])
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def build_artifacts(graph_dir: str | Path, out_dir: str | Path, adapters: dict[str, np.ndarray]) -> Path:
    from onnxruntime.training import artifacts

    manifest = Manifest.load(graph_dir)
    if manifest.kind != "encoder" or manifest.adapter.precision != "fp32":
        raise UserError(
            f"ORT backprop trains fp32 encoder graphs; {graph_dir} is a {manifest.adapter.precision} "
            f"{manifest.kind} graph"
        )
    model = trainable_graph(graph_dir, adapters)
    lora = [t["input"] for t in manifest.trainable]
    frozen = [t.name for t in model.graph.initializer if t.name not in lora]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    artifacts.generate_artifacts(
        model,
        requires_grad=lora,
        frozen_params=frozen,
        loss=artifacts.LossType.CrossEntropyLoss,
        optimizer=artifacts.OptimType.AdamW,
        artifact_directory=str(out),
    )
    for path in out.glob("*.onnx"):
        generated = onnx.load(str(path))
        if generated.ir_version > ORT_MAX_IR_VERSION:
            generated.ir_version = ORT_MAX_IR_VERSION
            onnx.save(generated, str(path))
    return out


class OrtBackprop:
    """AdamW steps on the adapters of an exported encoder graph, from artifacts built beforehand
    (building them is a workstation's job: a device would receive them)."""

    def __init__(self, artifacts_dir: str | Path, manifest: Manifest, lr: float) -> None:
        from onnxruntime.training.api import CheckpointState, Module, Optimizer

        out = Path(artifacts_dir)
        self.manifest = manifest
        self.state = CheckpointState.load_checkpoint(str(out / "checkpoint"))
        self.module = Module(str(out / "training_model.onnx"), self.state, str(out / "eval_model.onnx"))
        self.optimizer = Optimizer(str(out / "optimizer_model.onnx"), self.module)
        self.optimizer.set_learning_rate(lr)
        self.module.train()

    @classmethod
    def from_graph(
        cls, graph_dir: str | Path, work_dir: str | Path, adapters: dict[str, np.ndarray], lr: float
    ) -> OrtBackprop:
        return cls(build_artifacts(graph_dir, work_dir, adapters), Manifest.load(graph_dir), lr)

    def step(self, batch: ArrayBatch) -> float:
        loss = self.module(*[batch.inputs[name] for name in self.manifest.inputs], batch.labels)
        self.optimizer.step()
        self.module.lazy_reset_grad()
        return float(loss)

    def adapters(self) -> dict[str, np.ndarray]:
        return {t["name"]: self.state.parameters[t["input"]].data.reshape(t["shape"]) for t in self.manifest.trainable}
