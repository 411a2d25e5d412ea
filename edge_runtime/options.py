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

from edge_runtime.config import setting
from edge_runtime.spec import AdapterKind, AdapterSpec, Precision


@dataclass
class Model:
    model: str = setting("model alias (`edgetune list` shows them) or a local Hugging Face folder", "minilm")


@dataclass
class Task:
    task: str = setting("task name (`edgetune list` shows them)", "sst2")


@dataclass
class DataDir:
    data_dir: str | None = setting("folder with the task's files in the packaged layout (<task>/<file>); none = the "
                                   "packaged data", None)


@dataclass
class Batches:
    max_length: int = setting("max tokens per sequence", 128)
    batch_size: int = setting("examples per batch: of a step (in a federation, a local step) or a forward pass", 16)


@dataclass
class BasePrecision:
    precision: Precision = setting("precision of the frozen base; adapters are always fp32", "fp32")


@dataclass
class LoraRank:
    lora_r: int = setting("LoRA rank", 8)


@dataclass
class Lora(LoraRank):
    lora_alpha: int = setting("LoRA alpha", 16)
    lora_targets: tuple[str, ...] = setting("comma-separated module names for LoRA; empty = family default", ())


@dataclass
class Prompting:
    prompt: str = setting("causal LMs: a prompt template of the task (edgetune list shows them; default = the "
                          "measured best) or your own with the task's fields in braces, e.g. "
                          "'Review: {sentence}\\nSentiment:'", "default")
    label_words: tuple[str, ...] = setting("causal LMs: comma-separated words answering each class (with your own "
                                           "prompt; a space is put before each unless the prompt ends in one)", ())
    calibration: str = setting("causal LMs: none, content-free or centred (subtract the mean scores of unlabelled "
                               "training inputs; in a federation, from a statistics round over the devices'); "
                               "auto = the template's measured best", "auto")


@dataclass
class WarmStart:
    warm_start: str = setting("encoders: the head training starts from, solved with forward passes only: none, "
                              "zero-shot (label descriptions), centroids or ridge (from the training examples' "
                              "features; in a federation, from the devices' statistics in round 0); auto = ridge "
                              "from 1024 labelled examples, centroids below", "auto")
    warm_start_examples: int = setting("labelled training examples the warm start reads (in a federation, on each "
                                       "device, where a causal LM's centred calibration reads them too)", 2048)


@dataclass
class HeadTraining(WarmStart):
    train_head: bool = setting("encoders: train the classifier too; false keeps the warm start's head and trains "
                               "the adapter only (the head's steep logit scale then does not cap the step size)",
                               True)


@dataclass
class Seed:
    seed: int = setting("seed of everything drawn at random: data order and splits, initialisation, directions", 0)


@dataclass
class FineTuning(Seed, HeadTraining, Prompting, Lora, Batches, BasePrecision, DataDir, Task, Model):
    """What a run fine-tunes and on what: the same for one device (`edgetune train`) and a federation."""

    def adapter_spec(self, kind: AdapterKind = "lora", init_seed: int = 0) -> AdapterSpec:
        """What trains. A federation keeps the spec's default initialisation seed, not `seed`: the random
        test models draw their frozen base from it, and every device must hold the coordinator's base."""
        return AdapterSpec(self.model, self.task, self.precision, kind, self.lora_r, self.lora_alpha,
                           tuple(self.lora_targets), self.max_length, init_seed, self.prompt, tuple(self.label_words))


@dataclass
class Threads:
    threads: int = setting("torch threads per process", 2)


@dataclass
class Device:
    device: Literal["cpu", "cuda"] = setting("torch device the model runs on", "cpu")


@dataclass
class Progress:
    progress: bool = setting("show progress", True)


@dataclass
class Results(Progress):
    out: str = setting("JSON file to write the results to", "results.json")
