"""The settings of `edgetune bench memory` and `bench speed`, importable without torch so that
`edgetune --help` and a device's agent never load it; the checks that need the method registry
or the precisions import them when a benchmark actually runs."""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.config import setting
from edge_runtime.errors import UserError
from edge_runtime.ort.manifest import PRECISIONS as ORT_PRECISIONS

BACKENDS = ("torch", "ort")


def _check_methods(methods: tuple[str, ...]) -> None:
    from edge_runtime.estimators import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")


def _check_backends(backends: tuple[str, ...]) -> None:
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise UserError(f"backends must be some of {', '.join(BACKENDS)}, got {', '.join(backends) or 'none'}")


@dataclass
class MemoryBenchConfig:
    model: str = setting("model to measure", "smollm2-135m")
    task: str = setting("task whose examples fill the batch", "sst2")
    seq_len: int = setting("tokens per sequence (examples are stretched to exactly this)", 128)
    batch: int = setting("examples per step", 8)
    lora_r: int = setting("LoRA rank", 8)
    methods: tuple[str, ...] = setting("methods to measure; empty = all", ())
    precisions: tuple[str, ...] = setting("base precisions to measure", ("fp32", "int8"))
    adapters: tuple[str, ...] = setting("lora and/or full (full fine-tuning, fp32, where it fits in RAM)", ("lora",))
    steps: int = setting("steps per measurement (2: optimizer state exists during the second pass)", 2)
    zo_restore: str = setting("ZO restore: snapshot (bit-exact, one copy) or inplace (MeZO, no copy)", "snapshot")
    nan_guard: bool = setting("keep the trainer's NaN guard (two copies of the trainable tensors)", True)
    threads: int = setting("torch threads in each probe", 2)
    project: tuple[str, ...] = setting("architectures to project the table to with the memory model",
                                     ("llama-2-7b", "opt-13b"))
    project_precision: str = setting("base precision of the projected rows", "fp16")
    backends: tuple[str, ...] = setting("runtimes to measure: torch (eager) and/or ort (the exported graph on an "
                                        "onnxruntime session; LoRA, ZO methods and ort-fo backprop)", ("torch",))
    graphs: str = setting("folder where ort rows export (or reuse) their graphs", "runs/graphs")
    out: str = setting("JSON file to write", "bench-memory.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        for name in ("seq_len", "batch", "lora_r", "steps", "threads"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        from edge_runtime.models.precision import check_precision

        _check_methods(self.methods)
        _check_backends(self.backends)
        for precision in (*self.precisions, self.project_precision):
            check_precision(precision)
        for adapter in self.adapters:
            check_precision("fp32", adapter)
        if self.zo_restore not in ("snapshot", "inplace"):
            raise UserError(f"zo_restore must be snapshot or inplace, got {self.zo_restore!r}")


@dataclass
class SpeedBenchConfig:
    model: str = setting("model to time", "smollm2-135m")
    task: str = setting("task whose examples fill the batch", "sst2")
    seq_len: int = setting("tokens per sequence", 128)
    batch: int = setting("examples per step", 8)
    precision: str = setting("base precision", "fp32")
    methods: tuple[str, ...] = setting("methods to time; empty = all", ())
    repeats: int = setting("timed repeats per method (median reported)", 3)
    threads: int = setting("torch threads", 2)
    backends: tuple[str, ...] = setting("runtimes to time: torch (eager) and/or ort (the exported graph on an "
                                        "onnxruntime session)", ("torch",))
    ort_precision: str = setting("base precision of the ort rows' graph (fp32, fp16 or int8)", "int8")
    graphs: str = setting("folder where ort rows export (or reuse) their graphs", "runs/graphs")
    out: str = setting("JSON file to write", "bench-speed.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        for name in ("seq_len", "batch", "repeats", "threads"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        from edge_runtime.models.precision import check_precision

        _check_methods(self.methods)
        _check_backends(self.backends)
        check_precision(self.precision)
        if self.ort_precision not in ORT_PRECISIONS:
            raise UserError(f"ort_precision must be one of {', '.join(ORT_PRECISIONS)}, got {self.ort_precision!r}")
