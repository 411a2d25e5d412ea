"""The coordinator's own copy of the model (PyTorch, fp32): the initial adapter every device
starts from, a warm start it can compute alone, evaluation of the merged adapter after each round,
and the final peft export."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from coordinator.config import CoordinatorConfig
from coordinator.warm_start import HeadLayout
from edge_runtime.local.torch_model import TorchModel
from edge_runtime.objective import Objective
from edge_runtime.tasks import get_task, load_split, subsample
from edge_runtime.warm_start.forward import content_free_offsets, zero_shot_linear_head
from edge_runtime.warm_start.linear_head import ZERO_SHOT_TEMPERATURE


class TorchHost(TorchModel):
    def __init__(self, config: CoordinatorConfig) -> None:
        # The coordinator evaluates and exports what the devices train on an fp32 base, whatever theirs.
        super().__init__(replace(config.adapter_spec(), precision="fp32"), device=config.device)
        self.eval_examples = subsample(
            load_split(config.task, "eval", config.data_dir), config.eval_examples, config.seed
        )
        # A fixed sample of what the devices train on: the merged adapter's training loss.
        self.train_probe = subsample(
            load_split(config.task, "train", config.data_dir), config.train_probe_examples, config.seed
        )

    def evaluate_state(self) -> dict[str, float]:
        evaluated, probed = self.evaluate(self.eval_examples), self.evaluate(self.train_probe)
        return {
            "eval_accuracy": evaluated.accuracy,
            "eval_loss": evaluated.loss,
            "train_loss": probed.loss,
            "train_accuracy": probed.accuracy,
        }

    def set_constants(self, constants: dict) -> None:
        self.head.load_constants(constants)

    def head_layout(self) -> HeadLayout:
        spec, first = get_task(self.spec.dataset), self.eval_examples[0]
        if self.kind == "causal_lm":
            return HeadLayout(classes=len(self.head.template.render(first)[1]), width=0, candidates=None)
        weight, bias = self.classifier_tensors()
        multiple_choice = spec.kind == "multiple_choice"
        width = self.params[weight].shape[1]
        return HeadLayout(
            classes=2 if multiple_choice else len(spec.label_words),
            width=width,
            candidates=len(first.candidates) if multiple_choice else None,
            weight=weight,
            bias=bias,
        )

    def zero_shot_head(self) -> tuple[dict[str, np.ndarray], dict]:
        head = zero_shot_linear_head(Objective(self.module, self.head), get_task(self.spec.dataset), self.device)
        layout = self.head_layout()
        return (
            {layout.weight: head.weight.astype(np.float32), layout.bias: head.bias.astype(np.float32)},
            {"logit_scale": ZERO_SHOT_TEMPERATURE},
        )

    def content_free_offsets(self) -> list[float]:
        return content_free_offsets(Objective(self.module, self.head), self.eval_examples[0], self.device).tolist()
