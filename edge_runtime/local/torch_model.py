"""A model held in PyTorch for federated work: the device's local training of assigned tensors,
and what the coordinator needs (initial adapter, evaluation, peft export). One instance can serve
many emulated devices in turn: it always returns to the state it was given."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from edge_runtime import estimators
from edge_runtime.errors import UserError
from edge_runtime.estimators import build_method
from edge_runtime.heads import head_for
from edge_runtime.heads.adapter_folder import save_adapter
from edge_runtime.local.evaluation import EvalResult, evaluate
from edge_runtime.local.work import LocalResult, head_constants, run_local_steps
from edge_runtime.memory.tracker import LiveBytes
from edge_runtime.models import load_model
from edge_runtime.models.pooled_classifier import pooled_classifier_in, trained_classifier
from edge_runtime.models.precision import load_dtype, prepare_for_spec
from edge_runtime.objective import Objective, trainable_parameters, weighted_parts
from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import adapter_of, method_of
from edge_runtime.spec import AdapterSpec
from edge_runtime.tasks import Example, get_task
from edge_runtime.tasks.templates import prompt_template
from edge_runtime.warm_start.forward import feature_statistics, score_statistics

# Examples per forward pass of a STATISTICS task (no gradients, so inference memory at this batch).
STATISTICS_BATCH = 32


class TorchModel:
    def __init__(self, spec: AdapterSpec, device: str = "cpu", micro_batch: int | None = None) -> None:
        self.spec = spec
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise UserError(
                f"device {device!r} asked for, but this torch sees no CUDA device "
                f"(torch {torch.__version__}; a CPU build has none)"
            )
        task = get_task(spec.dataset)
        loaded = load_model(
            spec.model, num_labels=task.num_labels, dtype=load_dtype(spec.precision), seed=spec.init_seed
        )
        self.device = torch.device(device)
        self.module = prepare_for_spec(loaded, spec).to(self.device)
        self.kind = loaded.kind
        template = prompt_template(task, spec.prompt, spec.label_words)
        self.head = head_for(loaded.kind, loaded.tokenizer, task.kind, spec.max_length, template)
        self.params = trainable_parameters(self.module)
        self.micro_batch = micro_batch
        self.perturbations_per_pass: int | None = None  # none: where batching pays (copies_per_pass)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(p.shape) for name, p in self.params.items()}

    def state(self) -> dict[str, np.ndarray]:
        return {name: p.detach().cpu().numpy().copy() for name, p in self.params.items()}

    @torch.no_grad()
    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        for name, value in state.items():
            self.params[name].copy_(torch.from_numpy(np.asarray(value)))

    def train(self, task: pb.Task, examples: Sequence[Example], measure_first_step: bool = False) -> LocalResult:
        """Train the task's tensors from the loaded state; the state is loaded again afterwards.
        With `measure_first_step`, the first step runs under the memory tracker (the emulator's
        accounting of activations, tangents and method state)."""
        self.head.load_constants(head_constants(task))
        per_pass = self.copies_per_pass(task)
        return train_adapter(
            task,
            examples,
            self.params,
            self.device,
            measure_first_step,
            lambda params: Objective(
                self.module, self.head, params=params, micro_batch=self.micro_batch, perturbations_per_pass=per_pass
            ),
        )

    def copies_per_pass(self, task: pb.Task) -> int:
        return copies_per_pass(task, self.device, self.micro_batch, self.perturbations_per_pass)

    @torch.no_grad()
    def statistics(self, task: pb.Task, examples: Sequence[Example], batch_size: int = STATISTICS_BATCH) -> LocalResult:
        """A STATISTICS task: the warm start's statistics of (at most `task.statistics_examples` of)
        `examples` through the loaded state, as tensors: an encoder's feature statistics, a causal
        LM's score sums (for a centred calibration; labels unused)."""
        started = time.perf_counter()
        self.head.load_constants(head_constants(task))
        examples = list(examples[: task.statistics_examples or len(examples)])
        objective, lengths = Objective(self.module, self.head), []
        statistics = feature_statistics if self.kind == "encoder" else score_statistics
        tensors = statistics(objective, examples, batch_size, self.device, lengths).as_tensors()
        return LocalResult(
            deltas=tensors, scalars=[], examples=len(examples), seconds=time.perf_counter() - started, seq_lens=lengths
        )

    def classifier_tensors(self) -> tuple[str, str] | None:
        """The names of an encoder's trained head (weight, bias) among the trainable tensors."""
        pooled = pooled_classifier_in(self.module)
        if pooled is None:
            return None
        linear = trained_classifier(pooled)
        names = {id(p): name for name, p in self.params.items()}
        return names[id(linear.weight)], names[id(linear.bias)]

    def evaluate(self, examples: Sequence[Example], batch_size: int = 32) -> EvalResult:
        return evaluate(Objective(self.module, self.head), examples, batch_size, self.device)

    def export(self, folder: str) -> None:
        """The loaded state as a peft adapter folder (PeftModel.from_pretrained loads it), with the
        head's settings and a README on how to score with it."""
        save_adapter(
            self.module,
            self.head,
            folder,
            model=self.spec.model,
            card={"training": f"federated, on the {self.spec.dataset} task"},
        )


def _padded_length(batch) -> int:
    return max(int(part.inputs["input_ids"].shape[1]) for part, _ in weighted_parts(batch))


def copies_per_pass(task: pb.Task, device: torch.device, micro_batch: int | None, fixed: int | None) -> int:
    """A task's copies per pass (estimators.copies_per_pass) on this device at this micro-batch."""
    method = method_of(task)
    tokens = (micro_batch or task.batch_size) * adapter_of(task).max_length
    return estimators.copies_per_pass(method.name, method.settings.queries, device.type, tokens, fixed)


def train_adapter(
    task: pb.Task,
    examples: Sequence[Example],
    adapter: Mapping[str, torch.Tensor],
    device: torch.device,
    measure_first_step: bool,
    objective_for: Callable[[dict[str, torch.Tensor]], Objective],
) -> LocalResult:
    """A task's local steps on the task's tensors of `adapter`, through the objective made for them;
    returns their deltas and puts `adapter` back as it was."""
    started = time.perf_counter()
    params = {name: adapter[name] for name in task.tensors}
    start = {name: p.detach().clone() for name, p in params.items()}
    objective = objective_for(params)
    spec = method_of(task)
    method = build_method(spec.name, spec.settings)
    peak = LiveBytes() if measure_first_step else None

    def step(batch, index: int, seed: int):
        with peak if peak is not None and index == 0 else contextlib.nullcontext():
            return method.step(objective, batch, task.lr, seed)

    # Backprop would otherwise compute (and keep) gradients of every adapter, not only the task's.
    others = [p for name, p in adapter.items() if name not in params and p.requires_grad]
    for p in others:
        p.requires_grad_(False)
    try:
        result = run_local_steps(task, examples, lambda ex: objective.encode(ex).to(device), step, _padded_length)
    finally:
        for p in others:
            p.requires_grad_(True)
    if peak is not None and result.steps:
        result.step_peak_bytes = peak.peak
    with torch.no_grad():
        result.deltas = {name: (p.detach() - start[name]).cpu().numpy() for name, p in params.items()}
        for name, p in params.items():
            p.copy_(start[name])
    result.seconds = time.perf_counter() - started
    return result
