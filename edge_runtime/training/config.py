"""The one config object of a single-device training run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from edge_runtime.config import group, require_folder, setting
from edge_runtime.errors import UserError
from edge_runtime.options import FineTuning, Progress
from edge_runtime.spec import AdapterKind, AdapterSpec, EstimatorSettings
from edge_runtime.units import parse_bytes


@dataclass
class TrainConfig(Progress, FineTuning):
    train_split: str = setting("training split (winogrande also takes train_s, train_m)", "train")
    k_shot: int | None = setting("examples per class (MeZO few-shot); 0 or none trains on the full split", 16)
    eval_examples: int | None = setting("evaluation examples (seeded sample); none = the whole split", 500)
    calibration_examples: int = setting("causal LMs: unlabelled training examples a centred calibration reads", 256)
    method: str = setting("training method (edgetune list shows them all); auto = the one predicted to gain 5 "
                          "points soonest within the memory cap, from one timed step of each", "zo-sgd")
    steps: int = setting("optimizer steps", 1000)
    lr: float | None = setting("learning rate; none = the method's default", None)
    lr_schedule: Literal["constant", "linear", "cosine"] = setting("decay after warmup", "constant")
    warmup_steps: int = setting("linear warmup steps", 0)
    estimator: EstimatorSettings = group(EstimatorSettings())
    memory_cap: str | None = setting("cap on the process's memory, e.g. 1.2GB; plans the run to fit and stops "
                                   "it cleanly before crossing", None)
    micro_batch: int | None = setting("examples per forward pass (estimates accumulate over the batch); "
                                    "none = the whole batch, or the largest that fits the memory cap", None)
    perturbations_per_pass: int | None = setting(
        "two-point ZO: perturbed copies of the adapter per batched forward pass (1 = one at a time, at inference "
        "memory); none = all 2q where batching pays on this backend and batch size, fitted to the memory cap", None)
    allow_shorter_sequences: bool = setting("under a memory cap, may shorten max_length to fit", False)
    allow_method_change: bool = setting("under a memory cap, may switch to a cheaper method to fit", False)
    nan_guard: bool = setting("keep the last adapter with a finite loss to restore on NaN (two copies of the "
                            "trainable tensors; turn off for full fine-tuning under a tight cap)", True)
    adapter: AdapterKind = setting(
        "what trains: LoRA adapters, prefix tuning's key/value prefixes, or every weight (full fine-tuning, fp32)",
        "lora")
    prefix_tokens: int = setting("prefix tuning: virtual tokens per layer (MeZO: 5)", 5)
    attn_implementation: str = setting("eager (needed for jvp on CPU) or sdpa", "eager")
    device: str = setting("cpu, cuda or auto", "cpu")
    eval_every: int = setting("evaluate every N steps; 0 = only before and after", 0)
    eval_batch_size: int = setting("batch size for evaluation", 32)
    checkpoint_every: int = setting("save a resumable checkpoint every N steps; 0 = only at the end", 0)
    resume: bool = setting("continue from the checkpoint in out_dir", False)
    out_dir: str = setting("folder for the adapter, checkpoints and metrics", "runs/train")
    out: str | None = setting("write a JSON summary to this file", None)

    def validate(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "warm_start_examples": self.warm_start_examples,
                    "calibration_examples": self.calibration_examples, "lora_r": self.lora_r,
                    "prefix_tokens": self.prefix_tokens, "max_length": self.max_length,
                    "eval_batch_size": self.eval_batch_size}
        for name, value in positive.items():
            if not value > 0:
                raise UserError(f"{name} must be positive, got {value}")
        for name in ("warmup_steps", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"lr must be a positive finite number, got {self.lr}")
        self.estimator.validate()
        if self.k_shot is not None and self.k_shot < 0:
            raise UserError(f"k_shot must not be negative, got {self.k_shot}")
        if self.eval_examples is not None and self.eval_examples < 1:
            raise UserError(f"eval_examples must be at least 1, got {self.eval_examples}")
        if self.perturbations_per_pass is not None and self.perturbations_per_pass < 1:
            raise UserError(f"perturbations_per_pass must be at least 1, got {self.perturbations_per_pass}")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise UserError(f"micro_batch must be at least 1, got {self.micro_batch}")
        if self.memory_cap is not None:
            parse_bytes(self.memory_cap)
        if self.device not in ("cpu", "cuda", "auto"):
            raise UserError(f"device must be cpu, cuda or auto, got {self.device!r}")
        require_folder(self.out_dir, "out_dir")
        from edge_runtime.tasks import get_task

        get_task(self.task)  # a mistyped task is refused before PyTorch loads

    def adapter_spec(self) -> AdapterSpec:  # one run initialises from its own seed
        return super().adapter_spec(self.adapter, self.seed)
