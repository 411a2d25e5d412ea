"""The option groups only benches take (the others are in edge_runtime.options), torch-free like
every bench's config, so that a mistyped setting is refused before PyTorch loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_runtime.config import setting
from edge_runtime.errors import UserError
from edge_runtime.spec import AdapterKind


@dataclass
class Models:
    models: tuple[str, ...] = setting(
        "models to run, each an alias (`edgetune list` shows them) or a local folder", ("minilm",)
    )


@dataclass
class Tasks:
    tasks: tuple[str, ...] = setting("tasks to run (packaged data; `edgetune list` shows them)", ("sst2",))

    def check_tasks(self) -> None:
        from edge_runtime.tasks import get_task

        for task in self.tasks:
            get_task(task)


@dataclass
class Methods:
    methods: tuple[str, ...] = setting("training methods to run (`edgetune list` shows them); empty = all", ())

    def check_methods(self) -> None:
        from edge_runtime.estimators import METHODS  # the registry loads PyTorch: checked when the bench runs

        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise UserError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")


@dataclass
class Adapters:
    adapters: tuple[AdapterKind, ...] = setting(
        "what trains in each row: lora, prefix and/or full (full fine-tuning, fp32, where its estimate fits in RAM)",
        ("lora",),
    )


@dataclass
class Runtimes:
    backends: tuple[Literal["torch", "ort"], ...] = setting(
        "runtimes to run on: torch (eager) and/or ort (the exported graph on an onnxruntime session; LoRA, the ZO "
        "methods and ort-fo backprop)",
        ("torch",),
    )
    graphs: str = setting("folder where ort rows export (or reuse) their graphs", "runs/graphs")

    def check_backends(self) -> None:
        if not self.backends:
            raise UserError("backends must be torch and/or ort, got none")


@dataclass
class Repeats:
    repeats: int = setting("runs of each measurement (the median is reported)", 3)


@dataclass
class Quick:
    quick: bool = setting(
        "CI size: tiny models, a few steps and examples; a check that the bench runs, not a measurement", False
    )
