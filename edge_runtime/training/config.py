"""The one config object of a single-device training run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_runtime.config import defaults, require_folder, setting
from edge_runtime.errors import UserError
from edge_runtime.options import (
    CalibrationExamples,
    Estimator,
    Evaluation,
    FewShot,
    FineTuning,
    LearningRate,
    LrSchedule,
    Method,
    NanGuard,
    OutDir,
    PerturbationsPerPass,
    Results,
    Steps,
)
from edge_runtime.spec import AdapterKind, AdapterSpec
from edge_runtime.units import parse_bytes


@dataclass
@defaults(out=None)
class TrainConfig(
    Results,
    OutDir,
    NanGuard,
    PerturbationsPerPass,
    Estimator,
    LrSchedule,
    LearningRate,
    Steps,
    Method,
    CalibrationExamples,
    Evaluation,
    FewShot,
    FineTuning,
):
    recipe: bool = setting(
        "start from the measured recipe of the model, task and method where there is one (`edgetune list` "
        "shows them); the config file and flags override its settings",
        True,
    )
    tail_average: float = setting(
        "average the trained tensors over this last fraction of the steps (tail averaging: one more copy of "
        "them); the adapter saved and scored at the end is the mean. 0 = the last iterate",
        0.0,
    )
    train_split: str = setting("training split (winogrande also takes train_s, train_m)", "train")
    memory_cap: str | None = setting(
        "cap on the process's memory, e.g. 1.2GB; plans the run to fit and stops it cleanly before crossing", None
    )
    micro_batch: int | None = setting(
        "examples per forward pass (estimates accumulate over the batch); "
        "none = the whole batch, or the largest that fits the memory cap",
        None,
    )
    allow_shorter_sequences: bool = setting("under a memory cap, may shorten max_length to fit", False)
    allow_method_change: bool = setting("under a memory cap, may switch to a cheaper method to fit", False)
    adapter: AdapterKind = setting(
        "what trains: LoRA adapters, prefix tuning's key/value prefixes, or every weight (full fine-tuning, fp32)",
        "lora",
    )
    prefix_tokens: int = setting("prefix tuning: virtual tokens per layer (MeZO: 5)", 5)
    bottom_cache: str | None = setting(
        "with lora_layers on a Llama-family model: memory for the frozen layers' kept outputs "
        "(rows beyond it are recomputed); none = keep none. Under a memory cap none are kept",
        "1GiB",
    )
    attn_implementation: str = setting("eager (needed for jvp on CPU) or sdpa", "eager")
    # Not the Device group's: a run may also take `auto` (cuda where torch sees one), which the trainer resolves.
    device: str = setting("cpu, cuda or auto", "cpu")
    eval_every: int = setting("evaluate every N steps; 0 = only before and after", 0)
    eval_batch_size: int = setting("batch size for evaluation", 32)
    checkpoint_every: int = setting("save a resumable checkpoint every N steps; 0 = only at the end", 0)
    resume: bool = setting("continue from the checkpoint in out_dir", False)

    def validate(self) -> None:
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "warm_start_examples": self.warm_start_examples,
            "calibration_examples": self.calibration_examples,
            "lora_r": self.lora_r,
            "prefix_tokens": self.prefix_tokens,
            "max_length": self.max_length,
            "eval_batch_size": self.eval_batch_size,
        }
        for name, value in positive.items():
            if not value > 0:
                raise UserError(f"{name} must be positive, got {value}")
        for name in ("warmup_steps", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.method is None:
            raise UserError("method: a run names one (`edgetune list` shows them) or auto")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"lr must be a positive finite number, got {self.lr}")
        self.estimator.validate()
        if self.k_shot is not None and self.k_shot < 0:
            raise UserError(f"k_shot must not be negative, got {self.k_shot}")
        if not 0 <= self.tail_average < 1:
            raise UserError(f"tail_average is a fraction of the steps in [0, 1), got {self.tail_average}")
        if self.eval_examples is not None and self.eval_examples < 1:
            raise UserError(f"eval_examples must be at least 1, got {self.eval_examples}")
        if self.perturbations_per_pass is not None and self.perturbations_per_pass < 1:
            raise UserError(f"perturbations_per_pass must be at least 1, got {self.perturbations_per_pass}")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise UserError(f"micro_batch must be at least 1, got {self.micro_batch}")
        self.check_lora_shape(self.adapter)
        if self.memory_cap is not None:
            parse_bytes(self.memory_cap)
        if self.bottom_cache is not None:
            parse_bytes(self.bottom_cache)
        if self.device not in ("cpu", "cuda", "auto"):
            raise UserError(f"device must be cpu, cuda or auto, got {self.device!r}")
        require_folder(self.out_dir, "out_dir")
        from edge_runtime.tasks import get_task

        get_task(self.task)  # a mistyped task is refused before PyTorch loads

    def adapter_spec(self) -> AdapterSpec:  # one run initialises from its own seed
        return super().adapter_spec(self.adapter, self.seed)
