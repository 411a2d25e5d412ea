"""The forward passes that feed a warm start, and the head they give (PyTorch).

An encoder's head is solved from the statistics of its pooled embeddings (the classifier's input,
read with a forward hook, so LoRA, prefix tuning and full fine-tuning all give the features their
adapter produces); a causal LM's calibration offsets come from its scores of content-free or
unlabelled prompts. Nothing here runs a backward pass: a device that can only run inference can
warm-start itself, and a federation's devices send exactly these statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from edge_runtime.errors import UserError
from edge_runtime.heads import CandidateScoringHead, ClassifierHead
from edge_runtime.models.pooled_classifier import pooled_classifier_in, trained_classifier
from edge_runtime.objective import Objective
from edge_runtime.tasks import Example, TaskSpec
from edge_runtime.warm_start.calibration import CONTENT_FREE_INPUTS, ScoreStatistics, score_offsets
from edge_runtime.warm_start.linear_head import (
    ENCODER_WARM_STARTS,
    HEAD_SOLVERS,
    ZERO_SHOT_TEMPERATURE,
    LinearHead,
    fit_head,
    solver_for,
    zero_shot_head,
)
from edge_runtime.warm_start.statistics import FeatureStatistics


@dataclass(frozen=True)
class WarmStart:
    """What a run started from, for its summary."""

    kind: str  # none | zero-shot | centroids | ridge | calibration <name>
    examples: int = 0  # labelled or unlabelled examples it read
    temperature: float | None = None
    offsets: tuple[float, ...] = ()

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "examples": self.examples,
            "temperature": self.temperature,
            "offsets": list(self.offsets),
        }

    def describe(self) -> str:
        if self.kind.startswith("calibration"):
            offsets = ", ".join(f"{o:+.3f}" for o in self.offsets)
            return (
                f"{self.kind}"
                + (f" from {self.examples} unlabelled inputs" if self.examples else "")
                + (f" (offsets {offsets})" if offsets else "")
            )
        if self.kind in ("none", "resumed"):
            return {"none": "none (the head as initialised)", "resumed": "the checkpoint's"}[self.kind]
        source = f"{self.examples} labelled examples" if self.examples else "the label descriptions"
        return f"{self.kind} head from {source}, logit scale {self.temperature:.3g}"


def resolve_encoder_warm_start(requested: str, spec: TaskSpec, labelled: int) -> str:
    """What "auto" means for this task and this many labelled examples."""
    if requested not in (*ENCODER_WARM_STARTS, "auto"):
        raise UserError(f"unknown warm start {requested!r}; choose one of: auto, {', '.join(ENCODER_WARM_STARTS)}")
    if requested != "auto":
        return requested
    if labelled >= 4 * len(spec.label_words or (0, 1)):  # every class in both folds, twice over
        return solver_for("auto", labelled)
    return "zero-shot" if spec.label_descriptions else "none"


@torch.no_grad()
def warm_start_encoder(
    objective: Objective, spec: TaskSpec, kind: str, examples: Sequence[Example], batch_size: int, device: torch.device
) -> WarmStart:
    """Solve the encoder's head by `kind` from the features of `examples` and write it in place."""
    if kind == "none":
        return WarmStart("none")
    if kind == "zero-shot":
        head = zero_shot_linear_head(objective, spec, device)
        set_linear_head(objective, head)
        return WarmStart("zero-shot", 0, head.temperature)
    stats = feature_statistics(objective, examples, batch_size, device)
    head = fit_head(stats, kind, candidates=_candidates(objective, examples))
    set_linear_head(objective, head)
    return WarmStart(kind, len(examples), head.temperature)


def zero_shot_linear_head(objective: Objective, spec: TaskSpec, device: torch.device) -> LinearHead:
    """Cosine similarity to the embedding of each class's description (tasks/base.py)."""
    if not spec.label_descriptions or spec.kind != "classification":
        raise UserError(
            f"a zero-shot head needs sentences describing each class; {spec.name} has none "
            f"(use warm start {' or '.join(HEAD_SOLVERS)}, which learn from labelled examples)"
        )
    described = [
        Example(text=d, prompt=d, candidates=spec.label_words, label=i) for i, d in enumerate(spec.label_descriptions)
    ]
    descriptions = embeddings(objective, objective.head.encode(described).to(device)).double().cpu().numpy()
    return zero_shot_head(descriptions, ZERO_SHOT_TEMPERATURE)


def _candidates(objective: Objective, examples: Sequence[Example]) -> int | None:
    head = objective.head
    return len(examples[0].candidates) if isinstance(head, ClassifierHead) and head.multiple_choice else None


def feature_statistics(
    objective: Objective,
    examples: Sequence[Example],
    batch_size: int,
    device: torch.device,
    lengths: list[int] | None = None,
) -> FeatureStatistics:
    """Class counts, sums and Gram matrix of the pooled embeddings of `examples`; a multiple-choice
    example gives one (prompt, candidate) pair per candidate, of class 1 if it is the answer.
    `lengths` collects each batch's padded length (what its forward pass cost)."""
    stats = None
    for start in range(0, len(examples), batch_size):
        batch = objective.head.encode(examples[start : start + batch_size]).to(device)
        if lengths is not None:
            lengths.append(int(batch.inputs["input_ids"].shape[1]))
        features = embeddings(objective, batch).double().cpu().numpy()
        labels = batch.labels.cpu().numpy()
        if len(features) != len(labels):  # multiple choice: one row per candidate
            n = len(features) // len(labels)
            labels = (np.arange(n)[None, :] == labels[:, None]).astype(int).reshape(-1)
            classes = 2
        else:
            classes = len(examples[0].candidates)
        stats = stats or FeatureStatistics.empty(classes, features.shape[1])
        stats.add(features, labels)
    return stats


@torch.no_grad()
def embeddings(objective: Objective, batch) -> torch.Tensor:
    """What the encoder's classifier reads for `batch` (one row per example, or per candidate pair),
    through the whole adapted model: a forward hook, so any adapter's effect is in it."""
    model = pooled_classifier_in(objective.module)
    if model is None:
        raise UserError("a warm-started head needs an encoder; causal LMs are calibrated instead")
    captured: list[torch.Tensor] = []
    handle = model.classifier.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach()))
    try:
        objective.scores(batch)
    finally:
        handle.remove()
    return captured[0]


def set_linear_head(objective: Objective, head: LinearHead) -> None:
    """The solved head into the model's classifier, its temperature into the head's logit scale."""
    linear = trained_classifier(pooled_classifier_in(objective.module))
    if tuple(linear.weight.shape) != head.weight.shape:
        raise UserError(f"the solved head has shape {head.weight.shape}, the model's {tuple(linear.weight.shape)}")
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(head.weight))
        linear.bias.copy_(torch.from_numpy(head.bias))
    objective.head.load_constants({"logit_scale": head.temperature})


@torch.no_grad()
def calibrate(objective: Objective, examples: Sequence[Example], batch_size: int, device: torch.device) -> WarmStart:
    """Set a causal LM head's offsets by its template's calibration; `examples` are read for
    "centred" (unlabelled: their labels are never looked at)."""
    head = objective.head
    if not isinstance(head, CandidateScoringHead):
        raise UserError("calibration applies to a causal LM's label-word scores; encoders get a warm-started head")
    head.offsets = None
    kind = head.template.calibration
    if kind == "none":
        return WarmStart("calibration none")
    if kind == "content-free":
        offsets, read = content_free_offsets(objective, examples[0], device), 0
    else:
        offsets, read = centred_offsets(objective, examples, batch_size, device), len(examples)
    head.offsets = torch.tensor(offsets, dtype=torch.float32)
    return WarmStart(f"calibration {kind}", read, offsets=tuple(float(o) for o in offsets))


@torch.no_grad()
def content_free_offsets(objective: Objective, example: Example, device: torch.device) -> np.ndarray:
    """The mean scores of the template filled with content-free inputs ("N/A", "", "[MASK]"); any
    example of the task shows the template which fields to fill."""
    head = objective.head
    prompts = [head.template.render_content_free(example, text) for text in CONTENT_FREE_INPUTS]
    batch = head.encode_prompts(prompts, head.template.render(example)[1]).to(device)
    return score_offsets(head.raw_scores(objective.module, batch).cpu().numpy())


def centred_offsets(
    objective: Objective, examples: Sequence[Example], batch_size: int, device: torch.device
) -> np.ndarray:
    if not examples:
        raise UserError(
            "a centred calibration needs unlabelled inputs to average over, and there are none; "
            "use calibration content-free or none"
        )
    stats = score_statistics(objective, examples, batch_size, device)
    return score_offsets(stats.sums / stats.count)


@torch.no_grad()
def score_statistics(
    objective: Objective,
    examples: Sequence[Example],
    batch_size: int,
    device: torch.device,
    lengths: list[int] | None = None,
) -> ScoreStatistics:
    """Sum of the uncalibrated candidate scores over `examples` (their labels are not used)."""
    head = objective.head
    stats = None
    for start in range(0, len(examples), batch_size):
        batch = head.encode(examples[start : start + batch_size]).to(device)
        if lengths is not None:
            lengths.append(int(batch.inputs["input_ids"].shape[1]))
        scores = head.raw_scores(objective.module, batch).double().cpu().numpy()
        stats = stats or ScoreStatistics.empty(scores.shape[1])
        stats.add(scores)
    return stats
