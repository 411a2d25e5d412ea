"""The option groups the commands' configs are made of, each field declared once with its help.

A command's config inherits the groups it takes (`class TrainConfig(Progress, FineTuning)`) and
declares its own fields after them; @defaults (edge_runtime.config) gives a group's field another
default for one command. Dataclasses put the fields of the last base first, so a config lists its
groups from the one shown last in --help to the one shown first.

The choices several layers check (base precisions, adapter kinds) are edge_runtime.spec's, the one
declaration of what trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_runtime.config import group, setting
from edge_runtime.errors import UserError
from edge_runtime.spec import AdapterKind, AdapterSpec, EstimatorSettings, Precision


@dataclass
class Model:
    """The one model a command loads (a bench that sweeps several takes its own `models`)."""

    model: str = setting("model alias (`edgetune list` shows them) or a local Hugging Face folder", "minilm")


@dataclass
class Task:
    """The one task a command trains or scores on (a bench that sweeps several takes its own `tasks`)."""

    task: str = setting("task name (`edgetune list` shows them)", "sst2")


@dataclass
class DataDir:
    """Where a task's data comes from when not from the package: one run's, or a device agent's own share."""

    data_dir: str | None = setting(
        "folder with the task's files in the packaged layout (<task>/<file>); none = the packaged data", None
    )


@dataclass
class Batches:
    """The batch shape, which sets a step's activation memory and time: tokens per sequence, examples per batch."""

    max_length: int = setting("max tokens per sequence", 128)
    batch_size: int = setting("examples per batch: of a step (in a federation, a local step) or a forward pass", 16)


@dataclass
class BasePrecision:
    """The frozen base's number format, which sets its memory; what trains is fp32 at every precision."""

    precision: Precision = setting("precision of the frozen base; adapters are always fp32", "fp32")


@dataclass
class LoraRank:
    """LoRA's rank alone, for a command that needs the adapter's size but not the rest of its shape."""

    lora_r: int = setting("LoRA rank", 8)


@dataclass
class Lora(LoraRank):
    """LoRA's shape: rank, alpha (the update is scaled by alpha / rank) and the modules it adapts."""

    lora_alpha: int = setting("LoRA alpha", 16)
    lora_targets: tuple[str, ...] = setting("comma-separated module names for LoRA; empty = family default", ())
    lora_layers: int | None = setting(
        "LoRA in the top N transformer layers only; none = every layer. On one device a Llama-family "
        "model then runs the frozen layers below once per example and keeps their output (see bottom_cache)",
        None,
    )
    lora_fa: bool = setting(
        "LoRA-FA: keep each A at its seeded start and train B only: half the numbers a ZO step perturbs, "
        "and while B is near its zero start A's gradient is near zero anyway",
        False,
    )

    def check_lora_shape(self, adapter: str) -> None:
        """Refuse, as a UserError, a layer count that is not positive, or LoRA settings for an adapter
        without LoRA layers."""
        if self.lora_layers is not None and self.lora_layers < 1:
            raise UserError(f"lora_layers must be positive, got {self.lora_layers}")
        for name in ("lora_layers", "lora_fa"):
            if getattr(self, name) not in (None, False) and adapter != "lora":
                raise UserError(f"{name} shapes LoRA adapters; it does not apply to adapter {adapter!r}")


@dataclass
class Prompting:
    """How a causal LM is asked a classification task: prompt, answer words, score calibration. Encoders ignore it."""

    prompt: str = setting(
        "causal LMs: a prompt template of the task (edgetune list shows them; default = the "
        "measured best) or your own with the task's fields in braces, e.g. "
        "'Review: {sentence}\\nSentiment:'",
        "default",
    )
    label_words: tuple[str, ...] = setting(
        "causal LMs: comma-separated words answering each class (with your own "
        "prompt; a space is put before each unless the prompt ends in one)",
        (),
    )
    calibration: str = setting(
        "causal LMs: none, content-free or centred (subtract the mean scores of unlabelled "
        "training inputs; in a federation, from a statistics round over the devices'); "
        "auto = the template's measured best",
        "auto",
    )


@dataclass
class WarmStart:
    """The head an encoder's training starts from, solved with forward passes only, and the examples it reads."""

    warm_start: str = setting(
        "encoders: the head training starts from, solved with forward passes only: none, "
        "zero-shot (label descriptions), centroids or ridge (from the training examples' "
        "features; in a federation, from the devices' statistics in round 0); auto = ridge "
        "from 1024 labelled examples, centroids below",
        "auto",
    )
    warm_start_examples: int = setting(
        "labelled training examples the warm start reads (in a federation, on each "
        "device, where a causal LM's centred calibration reads them too)",
        2048,
    )


@dataclass
class HeadTraining(WarmStart):
    """The warm start, and whether training then moves the head too or the adapter only."""

    train_head: bool = setting(
        "encoders: train the classifier too; false keeps the warm start's head and trains "
        "the adapter only (the head's steep logit scale then does not cap the step size)",
        True,
    )


@dataclass
class Seed:
    """The seed of everything a run draws at random."""

    seed: int = setting("seed of everything drawn at random: data order and splits, initialisation, directions", 0)


@dataclass
class FineTuning(Seed, HeadTraining, Prompting, Lora, Batches, BasePrecision, DataDir, Task, Model):
    """What a run fine-tunes and on what: the same for one device (`edgetune train`) and a federation."""

    def adapter_spec(self, kind: AdapterKind = "lora", init_seed: int = 0) -> AdapterSpec:
        """What trains. A federation keeps the spec's default initialisation seed, not `seed`: the random
        test models draw their frozen base from it, and every device must hold the coordinator's base."""
        return AdapterSpec(
            self.model,
            self.task,
            self.precision,
            kind,
            self.lora_r,
            self.lora_alpha,
            tuple(self.lora_targets),
            self.lora_layers,
            self.lora_fa,
            self.max_length,
            init_seed,
            self.prompt,
            tuple(self.label_words),
        )


@dataclass
class Threads:
    """How many CPU threads torch may use in each process."""

    threads: int = setting("torch threads per process", 2)


@dataclass
class Device:
    """The torch device the model runs on."""

    device: Literal["cpu", "cuda"] = setting("torch device the model runs on", "cpu")


@dataclass
class Progress:
    """Whether a command shows its progress while it runs."""

    progress: bool = setting("show progress", True)


@dataclass
class Results(Progress):
    """The JSON file a command writes its results to, and whether it shows progress."""

    out: str | None = setting("JSON file to write the results to; none = write none", "results.json")


@dataclass
class OutDir:
    """The folder a command writes what it produces to."""

    out_dir: str = setting(
        "folder the run writes to: one device's adapter, checkpoints and metrics; a fleet's "
        "report (JSON, Markdown, PNG) and its coordinator's state",
        "runs/train",
    )


# How a method trains: one run's and a federation's devices' alike.


@dataclass
class Method:
    """The training method by name, or `auto`: the one predicted to gain accuracy soonest within the memory there is."""

    method: str | None = setting(
        "training method (`edgetune list` shows them; in a federation, the devices'); auto = the one predicted to "
        "gain accuracy soonest within the memory there is (one run: 5 points under the memory cap, from one timed "
        "step of each; a federation: per device, within its memory); none = the planner's default (a federation)",
        "zo-sgd",
    )


@dataclass
class LearningRate:
    """The learning rate; none lets a single run take its method's default."""

    lr: float | None = setting(
        "learning rate (in a federation, the devices'); none = the method's default (one "
        "run; a coordinator needs a number)",
        None,
    )


@dataclass
class LrSchedule:
    """The learning-rate schedule: linear warmup for some steps, then constant, linear or cosine decay,
    or constant with a linear cooldown over the last fifth (wsd)."""

    lr_schedule: Literal["constant", "linear", "cosine", "wsd"] = setting(
        "decay after warmup (wsd: constant, then a linear cooldown to zero over the last fifth of the steps)",
        "constant",
    )
    warmup_steps: int = setting("linear warmup steps", 0)


@dataclass
class Estimator:
    """Every setting a method reads (edge_runtime.spec.EstimatorSettings), as flat flags and keys."""

    estimator: EstimatorSettings = group(EstimatorSettings())


@dataclass
class Steps:
    """How many optimizer steps a run takes."""

    steps: int = setting(
        "optimizer steps (bench memory: of each measurement, whose second pass holds the optimizer's state)", 1000
    )


@dataclass
class PerturbationsPerPass:
    """How many perturbed copies of the adapter two-point ZO batches into one forward pass: memory for speed."""

    perturbations_per_pass: int | None = setting(
        "two-point ZO: perturbed copies of the adapter per batched forward pass (1 = one at a time, at inference "
        "memory); none = all 2q where batching pays on this backend and batch size, fitted to the memory cap",
        None,
    )


@dataclass
class NanGuard:
    """Whether a run keeps its last finite-loss adapter to restore on NaN, at the memory of two copies of it."""

    nan_guard: bool = setting(
        "keep the last adapter with a finite loss to restore on NaN (two copies of the "
        "trainable tensors; turn off for full fine-tuning under a tight cap)",
        True,
    )


# What a run trains and scores on, besides the task's own data.


@dataclass
class FewShot:
    """MeZO's few-shot setting: how many training examples per class a run samples, or the full split."""

    k_shot: int | None = setting("training examples per class (MeZO few-shot); 0 or none trains on the full split", 16)


@dataclass
class CalibrationExamples:
    """How many unlabelled training examples a causal LM's centred calibration reads."""

    calibration_examples: int = setting("causal LMs: unlabelled training examples a centred calibration reads", 256)


@dataclass
class Evaluation:
    """How many examples of the eval split a run scores on, a seeded sample, or all of them."""

    eval_examples: int | None = setting(
        "evaluation examples, a seeded sample of the eval split (a federation scores "
        "the merged adapter on them each round); none = the whole split",
        500,
    )


# The shape of a federation, and what its coordinator and devices share.


@dataclass
class Rounds:
    """How many rounds a federation runs."""

    rounds: int = setting("rounds to run (round 0 is the warm start's, when it needs the devices' data)", 20)


@dataclass
class LocalSteps:
    """How many steps each device takes per round before it reports."""

    local_steps: int = setting("steps a device takes per round", 20)


@dataclass
class Devices:
    """How many emulated devices a fleet or a federated bench runs."""

    devices: int = setting("devices of the federation (emulated)", 8)


@dataclass
class TrainProbe:
    """How many training examples the merged adapter's loss is measured on, each round."""

    train_probe_examples: int = setting("training examples the merged adapter's loss is measured on each round", 256)


@dataclass
class Profile:
    """The device profile (memory, speed) a device presents: a shipped id or a YAML file."""

    profile: str = setting("device profile: a shipped id (see device_profiles/) or a YAML file", "macbook-air-m2-16gb")


@dataclass
class Heartbeat:
    """How often devices send a heartbeat, in seconds; the coordinator tells each device on registering."""

    heartbeat_s: float = setting("how often devices send a heartbeat, in seconds (the coordinator tells them)", 10.0)


@dataclass
class JoinSecret:
    """The shared secret devices present to register; a coordinator off loopback requires one."""

    join_secret: str = setting(
        "secret a device presents to register with the coordinator, which requires one unless it listens on loopback",
        "",
    )


@dataclass
class StateDir:
    """The folder a process keeps its state in between runs (a coordinator's ledger, a device's identity)."""

    state_dir: str = setting(
        "folder for what a process keeps between runs: a coordinator's ledger (SQLite), "
        "checkpoints, metrics and final adapter; a device's identity (id + token, owner-only)",
        "runs/coordinator",
    )
