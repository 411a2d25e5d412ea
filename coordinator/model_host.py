"""The coordinator's own copy of the model (PyTorch, fp32): the initial adapter every device
starts from, evaluation of the merged adapter after each round, and the final peft export."""

from __future__ import annotations

from coordinator.config import CoordinatorConfig
from edge_runtime.agent.torch_backend import ModelSpec, TorchModel
from edge_runtime.tasks import load_split, subsample


def model_spec(config: CoordinatorConfig) -> ModelSpec:
    # The model seed stays ModelSpec's default: the random test models draw their frozen base from
    # it, and every device must hold the same base as the coordinator.
    return ModelSpec(config.model, config.task, "fp32", config.lora_r, config.lora_alpha, tuple(config.lora_targets),
                     config.max_length)


class TorchHost(TorchModel):
    def __init__(self, config: CoordinatorConfig) -> None:
        super().__init__(model_spec(config), device=config.device)
        self.eval_examples = subsample(load_split(config.task, "eval", config.data_dir), config.eval_examples,
                                       config.seed)
        # A fixed sample of what the devices train on: the merged adapter's training loss.
        self.train_probe = subsample(load_split(config.task, "train", config.data_dir), config.train_probe_examples,
                                     config.seed)

    def evaluate_state(self) -> dict[str, float]:
        evaluated, probed = self.evaluate(self.eval_examples), self.evaluate(self.train_probe)
        return {"eval_accuracy": evaluated.accuracy, "eval_loss": evaluated.loss, "train_loss": probed.loss,
                "train_accuracy": probed.accuracy}
