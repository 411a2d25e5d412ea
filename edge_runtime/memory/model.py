"""Peak memory of a training step, per component, from the model's shapes alone.

Weights, adapters and optimizer state are counted from the parameter shapes of the model built
on the meta device (with the run's LoRA and precision applied, so int8 tables and fp32 adapters
have their real sizes). Activations, tangents and gradients are measured by running the step's
kind of pass (no-grad forward, jvp, forward+backward) on meta tensors under `LiveBytes`: the
same transformers code the run executes, so no per-architecture formula can drift from it.
One constant covers what a loaded model holds besides tensors.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.errors import UserError
from edge_runtime.estimators import get_method
from edge_runtime.estimators.hybrid import backprop_part, gradients_only_for
from edge_runtime.memory.tracker import LiveBytes
from edge_runtime.models import ARCHITECTURES, build_architecture
from edge_runtime.models.checkpointing import recomputed_blocks
from edge_runtime.models.families import kind_for_family
from edge_runtime.models.loader import LoadedModel
from edge_runtime.models.masks import always_build_masks
from edge_runtime.models.precision import check_precision, load_dtype, prepare_for_spec
from edge_runtime.spec import AdapterSpec, MethodSpec
from edge_runtime.tasks import get_task

# Resident memory of a loaded model that is not tensor storage: tokenizer, module objects, kernel
# workspaces and what the first passes leave resident (oneDNN primitives, allocator arenas).
# Measured after loading and the first evaluation passes (tools/runtime_overhead.py): 18 MB for
# MiniLM, 33-39 MB for tiny-llama and tiny-bert, 44-66 MB for SmolLM2 (varies between processes).
# Only the plan made before loading uses it; the planner then re-fits the micro-batch to what the
# loaded, warmed-up process really holds (planner.refit_after_loading).
RUNTIME_BYTES = 48 * 10**6


@dataclass(frozen=True)
class Workload:
    """One training step's shape: what the estimate depends on."""

    adapter: AdapterSpec
    method: MethodSpec = MethodSpec()
    batch: int = 8  # examples per forward pass (the micro-batch)
    seq_len: int = 128  # tokens per sequence of the pass: a plan may shorten it, a real batch pad below it
    perturbations_per_pass: int = 1  # two-point ZO's perturbed copies batched into one pass
    nan_guard: bool = True  # the trainer's two last-good copies of the trainable tensors
    tail_average: bool = False  # the trainer's running mean of the last iterates: one copy

    @property
    def num_labels(self) -> int:
        """The task's number of labels, which sizes an encoder's classifier."""
        return get_task(self.adapter.dataset).num_labels

    def with_method(self, name: str) -> Workload:
        """The same workload under another method, its settings kept."""
        return replace(self, method=replace(self.method, name=name))


@dataclass(frozen=True)
class MemoryEstimate:
    """A training step's peak memory by component, in bytes."""

    weights: int  # the frozen base (nothing for full fine-tuning, where every weight is trainable)
    adapters: int  # the trainable tensors, fp32
    optimizer_state: int  # momentum / Adam moments, snapshots, the trainer's NaN guard and tail average
    activations: int  # peak of the pass's transient tensors
    tangents: int  # Forward-Grad's tangent per trainable tensor
    gradients: int  # backprop's .grad per trainable tensor
    runtime: int = RUNTIME_BYTES  # not tensors: see RUNTIME_BYTES

    @property
    def total(self) -> int:
        """The whole peak, in bytes: every component summed."""
        return (
            self.weights
            + self.adapters
            + self.optimizer_state
            + self.activations
            + self.tangents
            + self.gradients
            + self.runtime
        )

    def as_dict(self) -> dict[str, int]:
        """The components and the total by name, in bytes (for reports)."""
        return {**asdict(self), "total": self.total}


class PassNotSimulated(UserError):
    """A step's kind of pass could not run on meta tensors (no estimate for this combination)."""


def estimate(work: Workload) -> MemoryEstimate:
    """A step's peak memory by component, in bytes, from shapes alone: the model built on the meta device,
    its step's kind of pass run there. A precision, adapter or method that cannot go together is a
    UserError; a pass that cannot run on meta tensors is PassNotSimulated."""
    adapter = work.adapter
    check_precision(adapter.precision, adapter.kind)
    info = get_method(work.method.name)
    info.check_adapter(adapter.kind)
    net = meta_model(work)
    trainable = {name: p for name, p in net.named_parameters() if p.requires_grad}
    frozen = [p for p in net.parameters() if not p.requires_grad]
    adapters = _nbytes(trainable.values())
    weights = _nbytes(frozen) + _nbytes(net.buffers())
    copies = info.state_copies + (2 if work.nan_guard else 0) + (1 if work.tail_average else 0)
    points = work.perturbations_per_pass if info.pass_kind != "backward" else 1
    if info.pass_kind == "forward" and work.method.settings.zo_restore == "snapshot" and points == 1:
        copies += 1
    try:
        peak = pass_peak(
            net, trainable, info.pass_kind, work.batch, work.seq_len, recompute=info.recomputes_blocks, points=points
        )
        if info.backprop_part:  # hybrid ZO/FO: its backward through the head or last layer may peak higher
            part = set(backprop_part(list(trainable)))
            with gradients_only_for(trainable, part):
                peak = max(peak, pass_peak(net, {n: trainable[n] for n in part}, "backward", work.batch, work.seq_len))
    except RuntimeError as error:  # transformers code that cannot run on meta tensors for this combination
        raise PassNotSimulated(
            f"the memory model cannot simulate a {info.pass_kind} pass of {info.name} on {adapter.model} "
            f"({adapter.kind}, {adapter.precision}): {str(error).splitlines()[0][:120]}; train without a memory "
            "cap, or with another method or adapter"
        ) from None
    tangents = points * adapters if info.pass_kind == "jvp" else 0
    gradients = adapters if info.pass_kind == "backward" else 0
    # ZO draws one direction at a time, outside the passes; batched, the perturbed copies of the
    # trained tensors are held through the pass.
    directions = max((p.numel() * 4 for p in trainable.values()), default=0) if info.pass_kind == "forward" else 0
    stacked = points * adapters if points > 1 and info.pass_kind == "forward" else 0
    activations = max(peak - tangents - gradients, 0) + directions + stacked
    return MemoryEstimate(weights, adapters, copies * adapters, activations, tangents, gradients)


def inference_estimate(work: Workload) -> int:
    """Peak of evaluating the loss without training: weights plus one no-grad pass."""
    net = meta_model(work)
    trainable = {name: p for name, p in net.named_parameters() if p.requires_grad}
    tensors = _nbytes(net.parameters()) + _nbytes(net.buffers())
    return tensors + pass_peak(net, trainable, "forward", work.batch, work.seq_len) + RUNTIME_BYTES


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def meta_model(work: Workload) -> nn.Module:
    """The workload's model on the meta device, LoRA and precision applied: shapes, no storage."""
    return _meta_model(work.adapter, work.num_labels)


@functools.lru_cache(maxsize=8)
def _meta_model(adapter: AdapterSpec, num_labels: int) -> nn.Module:
    base = _meta_architecture(adapter.model, num_labels).to(load_dtype(adapter.precision))
    base.eval().requires_grad_(False)
    family = base.config.model_type
    loaded = LoadedModel(
        model=base, tokenizer=None, name=adapter.model, family=family, kind=kind_for_family(family), path=None
    )
    return prepare_for_spec(loaded, adapter)


def _meta_architecture(model: str, num_labels: int) -> nn.Module:
    from edge_runtime.models.architectures import model_from_config

    if model in ARCHITECTURES:
        net = build_architecture(model)
        if kind_for_family(net.config.model_type) != "encoder" or net.config.num_labels == num_labels:
            return net
        config = net.config
    else:
        from transformers import AutoConfig

        if not (Path(model).expanduser() / "config.json").is_file():
            names = ", ".join(ARCHITECTURES)
            raise UserError(
                f"cannot estimate memory for {model!r}: not a known architecture ({names}) "
                "nor a local model folder with a config.json"
            )
        config = AutoConfig.from_pretrained(Path(model).expanduser())
    config.num_labels = num_labels
    # The pooling does not change what a pass holds or costs.
    with torch.device("meta"):
        return model_from_config(config)


def pass_peak(
    net: nn.Module,
    trainable: dict[str, nn.Parameter],
    kind: str,
    batch: int,
    seq_len: int,
    recompute: bool = False,
    points: int = 1,
) -> int:
    """Peak bytes allocated by one pass of ``kind`` over a batch; on meta tensors, or real ones."""
    tracked = LiveBytes()
    run_pass(net, trainable, kind, batch, seq_len, tracked, recompute=recompute, points=points)
    return tracked.peak


def run_pass(
    net: nn.Module,
    trainable: dict[str, nn.Parameter],
    kind: str,
    batch: int,
    seq_len: int,
    observer: AbstractContextManager,
    recompute: bool = False,
    points: int = 1,
) -> None:
    """One pass of ``kind`` over a batch as the trainer runs it, with ``observer`` (a memory tracker,
    a FLOP counter) entered around the pass only, so the inputs it is given are not billed to it.
    ``recompute``: a backward pass that recomputes each block's activations (checkpointed backprop).
    ``points``: a forward pass at that many points of the trained tensors at once (batched ZO), or
    a jvp along that many tangents at once (batched Forward-Grad)."""
    ids = torch.zeros(batch, seq_len, dtype=torch.long, device=next(net.parameters()).device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    labels = torch.zeros(batch, dtype=torch.long, device=ids.device)
    causal = kind_for_family(_config(net).model_type) == "causal_lm"

    def loss(forward) -> torch.Tensor:
        # As the heads compute it: the candidate-scoring head reads the last position's
        # vocabulary log-probabilities (logits_to_keep=1), the classifier its logits.
        if causal:
            logits = forward(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1].float()
            scores = logits.log_softmax(-1)[:, :2]
        else:
            scores = forward(**inputs).logits.float()
        return F.cross_entropy(scores, labels % scores.shape[-1])

    # Build the mask, as a padded batch (the worst case) needs it.
    def functional(params):
        return loss(lambda **kw: torch.func.functional_call(net, params, args=(), kwargs=kw, strict=False))

    stacked = (
        {name: p.detach().expand(points, *p.shape) for name, p in trainable.items()}
        if points > 1 and kind == "forward"
        else {}
    )
    with always_build_masks(), observer:
        if kind == "forward" and stacked:
            with torch.no_grad():
                torch.vmap(functional)(stacked)
        elif kind == "forward":
            with torch.no_grad():
                loss(net)
        elif kind == "jvp":
            primals = {name: p.detach() for name, p in trainable.items()}
            if points > 1:
                tangents = {name: torch.randn(points, *p.shape, device=p.device) for name, p in primals.items()}
                torch.vmap(lambda tangent: torch.func.jvp(functional, (primals,), (tangent,)))(tangents)
            else:
                tangents = {name: torch.randn_like(p) for name, p in primals.items()}
                torch.func.jvp(functional, (primals,), (tangents,))
            del tangents
        else:
            with torch.enable_grad(), recomputed_blocks(net, enabled=recompute):
                loss(net).backward()
            for p in trainable.values():
                p.grad = None


def _config(net: nn.Module):
    return net.get_base_model().config if hasattr(net, "get_base_model") else net.config
