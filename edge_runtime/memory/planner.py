"""Fit a training run under a memory cap before it starts, or say what cap would work.

The cap is the whole process's; what is left of it for the model and training is the cap minus
what the process already holds (the Python runtime, torch, the tokenizer). The planner tries the
asked configuration first, then, only where the user allowed it, shorter sequences and cheaper
methods; within each, the largest micro-batch that fits, with gradient-estimate accumulation
over micro-batches so the effective batch (and so the estimator's variance) stays the same. Two-point
ZO's batched perturbed copies only fill what the micro-batch leaves: examples are what a memory cap
must keep, copies per pass only save time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edge_runtime.errors import UserError
from edge_runtime.estimators import get_method
from edge_runtime.memory.model import MemoryEstimate, Workload, estimate
from edge_runtime.units import format_bytes

# Cheaper methods to fall back to, by the kind of pass the asked method runs. Backprop first
# tries its own checkpointed twin (the same gradient, blocks recomputed); Forward-Grad keeps the
# exact directional derivative of a backprop method at a fraction of its memory; two-point ZO-SGD
# needs nothing beyond inference.
_CHEAPER = {"backward": ("forward-grad", "zo-sgd"), "jvp": ("zo-sgd",), "forward": ("zo-sgd",)}
MIN_SEQ_LEN = 32
# Headroom over the estimate: on SmolLM2 the estimate was 9% under to 2% over the measured peak
# (bench memory), and a plan that fits only on paper would be stopped by the watchdog mid-run.
ESTIMATE_MARGIN = 0.10
# Resident memory moves by a few MB from step to step whatever the model (page-granular frees,
# allocator arenas), so a margin of 10% of a small step's tensors is not headroom at all.
MARGIN_FLOOR = 4 * 2**20


def required_bytes(est: MemoryEstimate) -> int:
    """What a plan reserves for an estimate: the estimate plus the margin."""
    return int(est.total * (1 + ESTIMATE_MARGIN))


def step_bytes(est: MemoryEstimate) -> int:
    """What training adds to a loaded model: state copies, activations, tangents, gradients."""
    return est.optimizer_state + est.activations + est.tangents + est.gradients


@dataclass(frozen=True)
class Plan:
    """How a run fits under a memory cap: the method, sequence length, micro-batch and copies per pass it
    trains with, the estimate they were chosen by, and `changes`, what differs from what was asked."""

    work: Workload  # the planned workload, batch = the effective batch
    method: str
    micro_batch: int
    accumulation: int  # micro-batches per optimizer step
    perturbations_per_pass: int  # two-point ZO's perturbed copies per batched pass (1 for other methods)
    seq_len: int
    eval_batch: int
    estimate: MemoryEstimate
    available: int  # bytes of the cap left for model and training
    changes: tuple[str, ...]  # what differs from what was asked, in words


def plan_under_cap(
    cap: int,
    baseline: int,
    work: Workload,
    *,
    eval_batch: int,
    allow_shorter_sequences: bool = False,
    allow_method_change: bool = False,
) -> Plan:
    """The asked workload fitted under `cap` bytes (the largest micro-batch that fits; where allowed, shorter
    sequences or a cheaper method), or a UserError naming the smallest cap that works. ``work.batch`` is the
    effective batch; ``baseline`` the bytes the process holds before loading.

    Example, 64 examples of fo-adam on tiny-llama with 100 MB left of a 300 MB cap:

        >>> from edge_runtime.spec import AdapterSpec, MethodSpec
        >>> work = Workload(AdapterSpec("tiny-llama"), MethodSpec("fo-adam"), batch=64)
        >>> plan = plan_under_cap(300 * 10**6, 200 * 10**6, work, eval_batch=64)
        >>> plan.micro_batch, plan.accumulation, plan.changes
        (16, 4, ('micro-batch 16 x 4 accumulated for batch 64', 'eval batch 64 -> 32'))
    """
    available = cap - baseline
    methods = [work.method.name]
    if allow_method_change:
        info = get_method(work.method.name)
        cheaper = ((info.recomputing_twin,) if info.recomputing_twin else ()) + _CHEAPER[info.pass_kind]
        methods += [m for m in cheaper if m != work.method.name]
    lengths = [work.seq_len]
    if allow_shorter_sequences:
        while lengths[-1] // 2 >= MIN_SEQ_LEN:
            lengths.append(lengths[-1] // 2)
    for method in methods:
        for seq_len in lengths:
            trial = replace(work.with_method(method), seq_len=seq_len, perturbations_per_pass=1)
            micro = _largest_fitting(
                lambda b: required_bytes(estimate(replace(trial, batch=b))),  # noqa: B023
                work.batch,
                available,
            )
            if micro:
                return _plan(trial, work, micro, eval_batch, available)
    cheapest = replace(work.with_method(methods[-1]), seq_len=lengths[-1], batch=1, perturbations_per_pass=1)
    need = required_bytes(estimate(cheapest))
    precision = work.adapter.precision
    hint = "" if precision == "int8" else "; an int8 base (--precision int8) needs about 4x less for the weights"
    raise UserError(
        f"memory cap {format_bytes(cap)} is too small: {methods[-1]} on {work.adapter.model} ({precision}, "
        f"sequence {cheapest.seq_len}) needs {format_bytes(need)} at micro-batch 1 (estimate + "
        f"{ESTIMATE_MARGIN:.0%}) on top of the "
        f"{format_bytes(baseline)} this process already holds; the smallest cap that works is "
        f"{format_bytes(need + baseline)}{hint}"
    )


def _largest_fitting(need, upper: int, available: int) -> int:
    """Largest b in [1, upper] with need(b) <= available (need grows with b); 0 if none."""
    if need(1) > available:
        return 0
    low, high = 1, upper
    while low < high:
        mid = (low + high + 1) // 2
        if need(mid) <= available:
            low = mid
        else:
            high = mid - 1
    return low


def _plan(trial: Workload, asked: Workload, micro: int, eval_batch: int, available: int) -> Plan:
    accumulation = -(-asked.batch // micro)
    per_pass = _copies_fitting(
        replace(trial, batch=micro),
        asked.perturbations_per_pass,
        lambda work: required_bytes(estimate(work)),
        available,
    )
    chosen = estimate(replace(trial, batch=micro, perturbations_per_pass=per_pass))
    # Evaluation holds the same state as training and runs no-grad passes of its own batch size.
    state = chosen.total - chosen.activations - chosen.tangents - chosen.gradients
    inference = trial.with_method("zo-sgd")
    evaluation = (
        _largest_fitting(
            lambda b: int((state + estimate(replace(inference, batch=b)).activations) * (1 + ESTIMATE_MARGIN)),
            eval_batch,
            available,
        )
        or 1
    )
    changes = []
    if trial.method != asked.method:
        changes.append(f"method {asked.method.name} -> {trial.method.name}")
    if trial.seq_len != asked.seq_len:
        changes.append(f"max_length {asked.seq_len} -> {trial.seq_len}")
    if accumulation > 1:
        changes.append(f"micro-batch {micro} x {accumulation} accumulated for batch {asked.batch}")
    if _batches_copies(trial) and per_pass < asked.perturbations_per_pass:
        changes.append(f"ZO perturbations per pass {asked.perturbations_per_pass} -> {per_pass}")
    if evaluation < eval_batch:
        changes.append(f"eval batch {eval_batch} -> {evaluation}")
    planned = replace(trial, batch=asked.batch, perturbations_per_pass=per_pass)
    return Plan(
        planned,
        trial.method.name,
        micro,
        accumulation,
        per_pass,
        trial.seq_len,
        evaluation,
        chosen,
        available,
        tuple(changes),
    )


def _batches_copies(work: Workload) -> bool:
    return get_method(work.method.name).pass_kind != "backward"


def _copies_fitting(work: Workload, asked: int, need, available: int) -> int:
    """The most perturbed copies (tangents) per pass, up to `asked`, that fit at the work's
    micro-batch; 1 for backprop."""
    if not _batches_copies(work) or asked <= 1:
        return 1
    return _largest_fitting(lambda k: need(replace(work, perturbations_per_pass=k)), asked, available) or 1


def refit_after_loading(plan: Plan, cap: int, held: int) -> Plan:
    """The plan again, now that the model is loaded and has run: ``held`` (measured resident
    memory) replaces the estimate's weights and runtime, the parts a shape model knows least, so
    only the step's own tensors are still predicted. Shrinks the micro-batch (after the perturbed
    copies per pass) where the process holds more than estimated; refuses, naming the cap that would
    work, where not even one example fits."""
    available = cap - held

    def need(work: Workload) -> int:
        extra = step_bytes(estimate(work))
        return extra + max(int(extra * ESTIMATE_MARGIN), MARGIN_FLOOR)

    one_copy = replace(plan.work, perturbations_per_pass=1)
    micro = _largest_fitting(lambda b: need(replace(one_copy, batch=b)), plan.micro_batch, available)
    if not micro:
        raise UserError(
            f"memory cap {format_bytes(cap)} is too small: once loaded, the model and runtime hold "
            f"{format_bytes(held)} and a {plan.method} step needs {format_bytes(need(replace(one_copy, batch=1)))} "
            f"more at micro-batch 1; the smallest cap that works is "
            f"{format_bytes(held + need(replace(one_copy, batch=1)))}"
        )
    per_pass = _copies_fitting(replace(one_copy, batch=micro), plan.perturbations_per_pass, need, available)
    if (micro, per_pass) == (plan.micro_batch, plan.perturbations_per_pass):
        return plan
    accumulation = -(-plan.work.batch // micro)
    changes = [c for c in plan.changes if not c.startswith(("micro-batch", "ZO perturbations"))]
    if micro != plan.micro_batch:
        changes.append(f"micro-batch {micro} x {accumulation} accumulated for batch {plan.work.batch} (after loading)")
    if per_pass != plan.perturbations_per_pass:
        changes.append(f"ZO perturbations per pass {plan.perturbations_per_pass} -> {per_pass} (after loading)")
    work = replace(plan.work, perturbations_per_pass=per_pass)
    return replace(
        plan,
        work=work,
        micro_batch=micro,
        accumulation=accumulation,
        perturbations_per_pass=per_pass,
        estimate=estimate(replace(work, batch=micro)),
        changes=tuple(changes),
    )
