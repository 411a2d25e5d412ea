"""Export a model with LoRA as an ONNX inference graph in which every trainable tensor is an input.

The frozen base becomes constants of the graph; the LoRA A/B matrices (and an encoder's head) are
graph inputs, so a device perturbs and updates them as numpy arrays and feeds them to one
`onnxruntime.InferenceSession` per step: no re-export, no training artifacts. The graph ends at
what the head scores: the last position's vocabulary logits for a causal LM (left padding with
explicit position ids, as `CandidateScoringHead` feeds it), the class logits for an encoder.
The trace goes through transformers' mask construction with a padded batch, so the graph keeps
the mask path for every batch (no "all tokens real" shortcut is frozen into it); shapes are
dynamic in batch and length.

Every trainable input carries a leading perturbation axis P (the manifest says so): the graph
scores a batch tiled P times, each copy of the batch through its own copy of the adapters, in one
session call. Two-point ZO puts its 2q perturbed copies through the frozen base at once that way
(MobiZO's parallel queries); a plain loss binds the adapters with P = 1.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from edge_runtime.errors import UserError
from edge_runtime.heads import head_for
from edge_runtime.models import load_model
from edge_runtime.models.pooled_classifier import pooled_classifier_in
from edge_runtime.models.precision import prepare_for_spec
from edge_runtime.objective import trainable_parameters
from edge_runtime.ort.base_precision import lower_base_precision
from edge_runtime.ort.manifest import GRAPH_FILE, PRECISIONS, TOKENIZER_DIR, Manifest
from edge_runtime.spec import AdapterSpec
from edge_runtime.tasks import Example, get_task, load_split
from edge_runtime.tasks.templates import prompt_template

OPSET = 17
FEATURES = "features"


PERTURBATIONS_TRACED = 2  # copies the trace runs with (a size-1 axis could be folded away as a constant)


def _linear_per_perturbation(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A linear layer whose weight (and bias) carry a leading perturbation axis P: the rows of x are
    P blocks, one per copy of the batch, and block p goes through weight p."""
    weight, bias = module.weight, module.bias
    blocks = x.reshape(weight.shape[0], -1, x.shape[-1])
    out = torch.matmul(blocks, weight.transpose(1, 2))
    if bias is not None:
        out = out + bias.unsqueeze(1)
    return out.reshape(*x.shape[:-1], weight.shape[1])


class _WithInputs(nn.Module):
    """The model as a function of (batch tensors, trainable tensors): forward swaps each trainable
    parameter for the tensor given in its place, which the tracer then records as a graph input
    (torch.func.functional_call refuses to run under the tracer). Each trainable tensor comes with
    the leading perturbation axis, so the linear layers that hold them run one block per copy."""

    def __init__(self, model: nn.Module, names: Sequence[str], input_names: Sequence[str], causal: bool) -> None:
        super().__init__()
        self.model, self.input_names, self.causal = model, list(input_names), causal
        self.slots = [(model.get_submodule(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]) for name in names]
        held_elsewhere = sorted({type(module).__name__ for module, _ in self.slots if type(module) is not nn.Linear})
        if held_elsewhere:
            raise UserError(
                f"export-graph gives trainable tensors a perturbation axis in linear layers only; "
                f"this model trains tensors of {', '.join(held_elsewhere)}"
            )

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        inputs = dict(zip(self.input_names, tensors))
        trainable = tensors[len(self.input_names) :]
        saved = [module._parameters[attr] for module, attr in self.slots]
        for (module, attr), tensor in zip(self.slots, trainable):
            module._parameters[attr] = tensor
            module.forward = functools.partial(_linear_per_perturbation, module)
        try:
            if self.causal:
                return self.model(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1]
            # An encoder's graph also returns the pooled embedding its classifier reads.
            features: list[torch.Tensor] = []
            hook = pooled_classifier_in(self.model).classifier.register_forward_hook(
                lambda _m, args, _out: features.append(args[0])
            )
            try:
                logits = self.model(**inputs).logits
            finally:
                hook.remove()
            return logits, features[0]
        finally:
            for (module, attr), tensor in zip(self.slots, saved):
                module._parameters[attr] = tensor
                module.__dict__.pop("forward", None)


def export_graph(spec: AdapterSpec, out_dir: str | Path, *, opset: int = OPSET) -> Manifest:
    precision = spec.precision
    if precision not in PRECISIONS:
        raise UserError(f"export-graph writes {', '.join(PRECISIONS)} graphs; {precision} is not one of them")
    task = get_task(spec.dataset)
    if task.kind != "classification":
        raise UserError(f"export-graph supports classification tasks so far; {spec.dataset} is {task.kind}")
    loaded = load_model(spec.model, num_labels=task.num_labels, seed=spec.init_seed)
    # Traced in fp32: the graph's own precision is applied to the exported graph, not to this module.
    model = prepare_for_spec(loaded, replace(spec, precision="fp32"))
    params = trainable_parameters(model)
    template = prompt_template(task, spec.prompt, spec.label_words)
    # The trace's length only: the graph's lengths are dynamic.
    head = head_for(loaded.kind, loaded.tokenizer, task.kind, max_length=64, template=template)
    # Two examples, one padded: the traced mask path must handle padding. Tiled once per traced copy.
    examples = load_split(spec.dataset, "train")[:2]
    batch = head.encode([examples[0], _longer(examples[1])] * PERTURBATIONS_TRACED)
    if not bool((batch.inputs["attention_mask"] == 0).any()):
        raise UserError("could not build a padded example batch to trace the attention mask with")
    causal = loaded.kind == "causal_lm"
    input_names = list(batch.inputs)
    wrapper = _WithInputs(model, list(params), input_names, causal).eval()
    trainable = [
        {"name": name, "input": f"trainable.{i}", "shape": list(p.shape)} for i, (name, p) in enumerate(params.items())
    ]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs = ["scores"] if causal else ["scores", FEATURES]
    dynamic = (
        {name: {0: "batch", 1: "length"} for name in input_names}
        | {name: {0: "batch"} for name in outputs}
        | {t["input"]: {0: "perturbations"} for t in trainable}
    )
    stacked = [p.detach().expand(PERTURBATIONS_TRACED, *p.shape).contiguous() for p in params.values()]
    fp32_graph = out / (GRAPH_FILE if precision == "fp32" else "model.fp32.onnx")
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (*batch.inputs.values(), *stacked),
            str(fp32_graph),
            input_names=[*input_names, *[t["input"] for t in trainable]],
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    if precision != "fp32":
        lower_base_precision(fp32_graph, out / GRAPH_FILE, precision)
        fp32_graph.unlink()
    loaded.tokenizer.save_pretrained(str(out / TOKENIZER_DIR))
    candidate_ids = batch.extras["candidate_ids"].tolist() if "candidate_ids" in batch.extras else None
    tokenizer = loaded.tokenizer
    manifest = Manifest(
        spec,
        loaded.kind,
        input_names,
        trainable,
        "scores",
        candidate_ids,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        bos_id=tokenizer.bos_token_id,
        template=asdict(template) if causal else None,
        features_output=None if causal else FEATURES,
        perturbation_axis=True,
    )
    manifest.save(out)
    return manifest


def _longer(example: Example) -> Example:
    """The example with every text three times over, so that a batch with it needs padding."""
    return replace(
        example,
        text=example.text * 3,
        prompt=example.prompt * 3,
        fields=tuple((name, value * 3) for name, value in example.fields),
    )
