"""The settings of every `edgetune bench` kind, importable without torch so that `edgetune --help`
and a device's agent never load it; the checks that need the method registry
or the precisions import them when a benchmark actually runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_runtime.config import config_fields, require_at_least_one, setting
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
    queries: int = setting("directions per step (q) of the ZO rows", 1)
    perturbations_per_pass: int = setting("two-point ZO's perturbed copies per batched pass (1: one at a time)", 1)
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
        require_at_least_one(self, "seq_len", "batch", "lora_r", "steps", "threads", "queries",
                             "perturbations_per_pass")
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
    queries: tuple[int, ...] = setting("directions per step (q) of the ZO and Forward-Grad rows, one row each", (1,))
    zo_passes: tuple[str, ...] = setting("how ZO rows run their 2q perturbed copies and Forward-Grad rows their q "
                                         "tangents: sequential (one per pass) and/or batched (all in one pass)",
                                         ("sequential",))
    repeats: int = setting("timed repeats per method (median reported)", 3)
    threads: int = setting("torch threads", 2)
    device: str = setting("torch rows' device: cpu or cuda", "cpu")
    backends: tuple[str, ...] = setting("runtimes to time: torch (eager) and/or ort (the exported graph on an "
                                        "onnxruntime session)", ("torch",))
    ort_precision: str = setting("base precision of the ort rows' graph (fp32, fp16 or int8)", "int8")
    graphs: str = setting("folder where ort rows export (or reuse) their graphs", "runs/graphs")
    out: str = setting("JSON file to write", "bench-speed.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        require_at_least_one(self, "seq_len", "batch", "repeats", "threads")
        from edge_runtime.models.precision import check_precision

        if not self.queries or min(self.queries) < 1:
            raise UserError(f"queries must be at least 1, got {self.queries}")
        if not self.zo_passes or set(self.zo_passes) - {"sequential", "batched"}:
            raise UserError(f"zo_passes must be sequential and/or batched, got {', '.join(self.zo_passes)}")
        if self.device not in ("cpu", "cuda"):
            raise UserError(f"device must be cpu or cuda, got {self.device!r}")
        _check_methods(self.methods)
        _check_backends(self.backends)
        check_precision(self.precision)
        if self.ort_precision not in ORT_PRECISIONS:
            raise UserError(f"ort_precision must be one of {', '.join(ORT_PRECISIONS)}, got {self.ort_precision!r}")


@dataclass
class ConvergenceBenchConfig:
    models: tuple[str, ...] = setting("models to train", ("minilm",))
    tasks: tuple[str, ...] = setting("tasks (packaged data: sst2, copa, rte, boolq, winogrande)", ("sst2", "copa"))
    methods: tuple[str, ...] = setting("methods to compare; empty = all", ())
    adapters: tuple[str, ...] = setting("lora, prefix and/or full (full fine-tuning, where its estimate fits in RAM)",
                                      ("lora",))
    budget: int = setting("forward passes per run (the same query budget for every method)", 2000)
    queries: int = setting("random directions per step (q)", 1)
    lrs: tuple[str, ...] = setting("learning rates as method=lr or adapter/method=lr (the latter wins; others use "
                                   "the method's default)", ())
    variants: tuple[str, ...] = setting("recipes to run every method with, each name:key=value;key=value over "
                                        "`edgetune train` settings (e.g. r2:lora_r=2;lora_alpha=4); empty = the "
                                        "settings above", ())
    mu: float = setting("ZO perturbation scale", 1e-2)
    batch_size: int = setting("examples per step", 16)
    k_shot: int = setting("training examples per class (MeZO few-shot); 0 = the whole training split", 16)
    max_length: int = setting("max tokens per sequence", 128)
    warm_start: str = setting("encoders' head before training (none, zero-shot, centroids, ridge, auto)", "auto")
    train_head: bool = setting("encoders: train the warm-started head too (false: the adapter only)", True)
    lr_schedule: str = setting("constant, linear or cosine decay after warmup", "constant")
    warmup_steps: int = setting("linear warmup steps", 0)
    eval_examples: int | None = setting("dev examples for accuracy; none = the whole dev split", 200)
    eval_points: int = setting("evaluations along each run (besides the one before training)", 5)
    device: str = setting("cpu or cuda (where the runs train)", "cpu")
    memory: bool = setting("measure peak memory of each method and of inference, each in a fresh process", True)
    repeats: int = setting("timed repeats of the forward floor (median)", 3)
    threads: int = setting("torch threads", 1)
    seed: int = setting("seed of data, directions and initialisation", 0)
    quick: bool = setting("CI size: tiny-bert, a 24-pass budget, 4 examples per class, 16 dev examples", False)
    out: str = setting("JSON file to write (a Markdown table is written beside it)", "bench-convergence.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        if self.quick:
            self.models = ("tiny-bert",)
            self.budget, self.k_shot, self.eval_examples, self.eval_points = 24, 4, 16, 2
            self.batch_size, self.max_length, self.repeats = 4, 32, 1
        require_at_least_one(self, "budget", "queries", "batch_size", "max_length", "eval_points", "repeats",
                             "threads")
        if self.k_shot < 0 or (self.eval_examples is not None and self.eval_examples < 1):
            raise UserError("k_shot must not be negative and eval_examples must be at least 1 (or none)")
        if self.device not in ("cpu", "cuda"):
            raise UserError(f"device must be cpu or cuda, got {self.device!r}")
        from edge_runtime.models.precision import check_precision
        from edge_runtime.tasks import get_task

        _check_methods(self.methods)
        for task in self.tasks:
            get_task(task)
        for adapter in self.adapters:
            check_precision("fp32", adapter)
        self.learning_rates()
        self.recipes()

    def recipes(self) -> dict[str, dict[str, str]]:
        """{variant name: train settings it overrides}; one unnamed variant when none is given."""
        from edge_runtime.training.config import TrainConfig

        known = {f.name for f, _, _ in config_fields(TrainConfig)}
        recipes: dict[str, dict[str, str]] = {}
        for item in self.variants or ("",):
            name, _, settings = item.partition(":")
            pairs = [pair.partition("=") for pair in settings.split(";") if pair.strip()]
            if item and (not name.strip() or any(not sep for _, sep, _ in pairs)):
                raise UserError(f"variants: expected name:key=value;key=value, got {item!r}")
            unknown = [key.strip() for key, _, _ in pairs if key.strip() not in known]
            if unknown:
                raise UserError(f"variants: {', '.join(unknown)} are not `edgetune train` settings")
            recipes[name.strip()] = {key.strip(): value.strip() for key, _, value in pairs}
        return recipes

    def learning_rates(self) -> dict[str, float]:
        """{"method" or "adapter/method": lr}"""
        rates = {}
        for item in self.lrs:
            key, _, value = item.partition("=")
            key = key.strip()
            adapter, _, method = key.rpartition("/")
            from edge_runtime.estimators import get_method
            from edge_runtime.models.precision import check_precision

            get_method(method)
            if adapter:
                check_precision("fp32", adapter)
            try:
                rates[key] = float(value)
            except ValueError:
                raise UserError(f"lrs: expected method=lr or adapter/method=lr, got {item!r}") from None
        return rates

    def learning_rate(self, adapter: str, method: str) -> float | None:
        rates = self.learning_rates()
        return rates.get(f"{adapter}/{method}", rates.get(method))


PLANNERS = ("spry", "fedavg-full", "zo-seed")


@dataclass
class CommBenchConfig:
    model: str = setting("model of the measured in-process federation", "minilm")
    shape_models: tuple[str, ...] = setting("models whose adapter shapes give computed rows",
                                          ("minilm", "smollm2-135m"))
    planners: tuple[str, ...] = setting("spry, fedavg-full and/or zo-seed", PLANNERS)
    devices: int = setting("devices in the federation", 4)
    local_steps: int = setting("steps a device takes per round", 20)
    queries: int = setting("directions per step (seed-and-scalar uploads one scalar per query)", 1)
    batch_size: int = setting("examples per local step", 8)
    lora_r: int = setting("LoRA rank", 8)
    max_length: int = setting("tokens per sequence", 64)
    threads: int = setting("torch threads", 1)
    quick: bool = setting("CI size: tiny-bert federation, 4 local steps, shapes of tiny-bert and minilm", False)
    out: str = setting("JSON file to write (a Markdown table is written beside it)", "bench-comm.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        if self.quick:
            self.model, self.shape_models = "tiny-bert", ("tiny-bert", "minilm")
            self.local_steps, self.batch_size = 4, 4
        unknown = [p for p in self.planners if p not in PLANNERS]
        if unknown:
            raise UserError(f"unknown planner(s) {', '.join(unknown)}; choose from {', '.join(PLANNERS)}")
        require_at_least_one(self, "devices", "local_steps", "queries", "batch_size", "lora_r", "max_length",
                             "threads")


@dataclass
class FleetBenchConfig:
    models: tuple[str, ...] = setting("models to emulate", ("tiny-llama", "minilm"))
    sizes: tuple[int, ...] = setting("fleet sizes", (10, 100, 1000))
    total_steps: int = setting("device-steps per row (a fleet of N runs total_steps / N each)", 1000)
    method: str = setting("training method of the devices", "zo-sgd")
    batch_size: int = setting("examples per step", 8)
    threads: int = setting("torch threads", 2)
    repeats: int = setting("runs of every row (the median is reported)", 1)
    batch_devices: tuple[int, ...] = setting("devices per batched forward pass to run every fleet with (1 = each "
                                             "device alone; others are reported against it)", (1,))
    device: str = setting("cpu or cuda (where the emulated devices' passes run)", "cpu")
    quick: bool = setting("CI size: tiny-llama only, fleets of 2 and 10, 40 device-steps", False)
    out: str = setting("JSON file to write", "bench-fleet.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        if self.quick:
            self.models, self.sizes, self.total_steps = ("tiny-llama",), (2, 10), 40
        require_at_least_one(self, "repeats")
        if not self.batch_devices or any(b < 1 for b in self.batch_devices):
            raise UserError(f"batch_devices must be 1 or more devices per pass, got {self.batch_devices}")
        if self.device not in ("cpu", "cuda"):
            raise UserError(f"device must be cpu or cuda, got {self.device!r}")
        if any(s < 1 or self.total_steps % s for s in self.sizes):
            raise UserError(f"every fleet size must divide total_steps={self.total_steps}: {self.sizes}")


@dataclass(frozen=True)
class FederatedRun:
    planner: str
    method: str
    lr: float
    # Forward-only runs keep the warm start's head (forward gradients on its steep logit scale
    # diverge; the adapter trains); backprop trains it too.
    train_head: bool


# Every run starts from the same federated warm start (round 0); learning rates measured on the
# default fleet of `edgetune fleet` (MiniLM, SST-2) after it. Spry at 1e-2 diverged after 14 of
# 20 rounds (docs/benchmarks/federated/spry-lr1e-2).
FEDERATED_RUNS = {
    "spry": FederatedRun("spry", "forward-grad", 3e-3, train_head=False),
    "fedmezo-seeds": FederatedRun("zo-seed", "zo-sgd", 1e-3, train_head=False),
    "fedavg-backprop": FederatedRun("fedavg-full", "fo-adam", 1e-3, train_head=True),
    # FwdLLM's setting: forward gradients, but every device perturbs the whole adapter (no slices).
    "fwdllm-unsliced": FederatedRun("fedavg-full", "forward-grad", 1e-3, train_head=False),
}


@dataclass
class FederatedBenchConfig:
    model: str = setting("model the fleet fine-tunes", "minilm")
    task: str = setting("task (split among the devices with Dirichlet alpha 1.0)", "sst2")
    runs: tuple[str, ...] = setting(f"runs to compare: {', '.join(FEDERATED_RUNS)}", tuple(FEDERATED_RUNS))
    warm_start: str = setting("the head every run starts from (round 0 when it needs the devices' data)", "auto")
    devices: int = setting("emulated devices (identical and always on, so only the method differs)", 10)
    profile: str = setting("the devices' profile", "jetson-agx-orin-64gb")
    rounds: int = setting("rounds per run", 20)
    local_steps: int = setting("steps a device takes per round", 5)
    batch_size: int = setting("examples per local step", 8)
    max_length: int = setting("tokens per sequence", 64)
    eval_examples: int = setting("dev examples scored after every round", 200)
    train_probe_examples: int = setting("training examples the merged adapter's loss is measured on", 128)
    targets: tuple[float, ...] = setting("accuracies whose first round each run reports", (0.6, 0.65))
    threads: int = setting("torch threads", 1)
    seed: int = setting("seed of the data split, the devices and the directions", 0)
    data_dir: str | None = setting("task data folder; none = the packaged data", None)
    fleet_reports: str | None = setting("folder to keep every run's fleet report in; none = discard them", None)
    quick: bool = setting("CI size: tiny-bert, 3 devices, 2 rounds of 2 steps, 16 dev examples", False)
    out: str = setting("JSON file to write (a Markdown table is written beside it)", "bench-federated.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        if self.quick:
            self.model, self.devices, self.rounds, self.local_steps = "tiny-bert", 3, 2, 2
            self.eval_examples, self.train_probe_examples, self.batch_size = 16, 16, 4
        unknown = [r for r in self.runs if r not in FEDERATED_RUNS]
        if unknown or not self.runs:
            raise UserError(f"unknown run(s) {', '.join(unknown) or 'none'}; choose from {', '.join(FEDERATED_RUNS)}")
        require_at_least_one(self, "devices", "rounds", "local_steps", "batch_size", "max_length", "eval_examples",
                             "train_probe_examples", "threads")
        if any(not 0 < t <= 1 for t in self.targets):
            raise UserError(f"targets are accuracies in (0, 1], got {self.targets}")



@dataclass
class WarmStartBenchConfig:
    models: tuple[str, ...] = setting("models to score", ("minilm", "smollm2-135m"))
    tasks: tuple[str, ...] = setting("tasks (packaged data)", ("sst2",))
    sizes: tuple[int, ...] = setting("encoders: labelled training examples each head is solved from",
                                     (32, 128, 512, 2048))
    poolings: tuple[str, ...] = setting("encoders: poolings to compare (own = what the model folder declares)",
                                        ("own", "cls"))
    calibration_examples: int = setting("causal LMs: unlabelled training examples a centred calibration reads", 256)
    eval_examples: int | None = setting("dev examples scored (seeded sample); none = the whole split", None)
    max_length: int = setting("max tokens per sequence", 256)
    batch_size: int = setting("examples per forward pass", 32)
    threads: int = setting("torch threads", 2)
    seed: int = setting("seed of the training sample", 0)
    quick: bool = setting("CI size: tiny-bert and tiny-llama, 16 and 32 examples, 32 dev examples", False)
    out: str = setting("JSON file to write (a Markdown table is written beside it)", "bench-warm-start.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        if self.quick:
            self.models, self.sizes, self.eval_examples = ("tiny-bert", "tiny-llama"), (16, 32), 32
            self.calibration_examples, self.max_length = 16, 64
        require_at_least_one(self, "calibration_examples", "max_length", "batch_size", "threads")
        if not self.sizes or any(s < 4 for s in self.sizes):
            raise UserError(f"sizes must be at least 4 examples each (two per class per fold), got {self.sizes}")
        unknown = [p for p in self.poolings if p not in ("own", "mean", "cls")]
        if unknown:
            raise UserError(f"poolings are own, mean or cls, got {', '.join(unknown)}")
        from edge_runtime.tasks import get_task

        for task in self.tasks:
            get_task(task)


@dataclass
class TimeToAccuracyBenchConfig:
    model: str = setting("model to train", "minilm")
    task: str = setting("task the curves were measured on", "sst2")
    caps: tuple[str, ...] = setting("memory caps to plan under, e.g. 2GB,700MB; 'none' = no cap", ("none",))
    curves: str = setting("bench convergence JSON whose curves give each method's steps to a gain",
                          "docs/benchmarks/convergence/convergence-minilm-sst2.json")
    gains: tuple[int, ...] = setting("accuracy gains over the curves' start, in points", (2, 5, 10))
    batch_size: int = setting("examples per step (as in the curves)", 16)
    max_length: int = setting("max tokens per sequence (as in the curves)", 128)
    precision: str = setting("base precision", "fp32")
    threads: int = setting("torch threads", 2)
    device: str = setting("cpu or cuda (where steps are timed)", "cpu")
    out: str = setting("JSON file to write (a Markdown table is written beside it)", "bench-time-to-accuracy.json")
    progress: bool = setting("show a progress bar", True)

    def validate(self) -> None:
        require_at_least_one(self, "batch_size", "max_length", "threads")
        from edge_runtime.models.precision import check_precision
        from edge_runtime.units import parse_bytes

        check_precision(self.precision)
        for cap in self.caps:
            if cap != "none":
                parse_bytes(cap)
        if not self.gains or min(self.gains) <= 0:
            raise UserError(f"gains must be positive points, got {self.gains}")
        if not Path(self.curves).is_file():
            raise UserError(f"no convergence results at {self.curves}: write them with `edgetune bench convergence`")
