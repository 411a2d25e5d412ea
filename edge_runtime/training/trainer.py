"""`edgetune train`: fine-tune a LoRA adapter on one device and report what it cost."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from edge_runtime.config import config_values
from edge_runtime.costs import time_to_target
from edge_runtime.errors import UserError
from edge_runtime.estimators import (
    Method,
    NonFiniteLoss,
    build_method,
    copies_per_pass,
    get_method,
)
from edge_runtime.estimators.perturbation import Snapshot, step_seed
from edge_runtime.heads import head_for
from edge_runtime.heads.adapter_folder import save_adapter
from edge_runtime.local.evaluation import EvalResult, evaluate
from edge_runtime.memory import Workload
from edge_runtime.memory import measure as memory
from edge_runtime.memory.planner import Plan, plan_under_cap, refit_after_loading, required_bytes
from edge_runtime.memory.watchdog import MemoryWatchdog
from edge_runtime.models import LoadedModel, load_model
from edge_runtime.models.frozen_bottom import FrozenBottom, keep_frozen_bottom
from edge_runtime.models.pooled_classifier import freeze_classifier
from edge_runtime.models.precision import load_dtype, prepare_for_spec
from edge_runtime.objective import Objective
from edge_runtime.spec import MethodSpec
from edge_runtime.tasks import Example, TaskSpec, get_task, subsample
from edge_runtime.tasks.batches import BatchSampler, evaluation_examples, training_examples
from edge_runtime.tasks.templates import prompt_template
from edge_runtime.training import method_choice
from edge_runtime.training.averaging import TailAverage, first_averaged_step
from edge_runtime.training.checkpoint import Progress, load_checkpoint, save_checkpoint, saved_method
from edge_runtime.training.config import TrainConfig
from edge_runtime.training.schedule import learning_rate
from edge_runtime.units import format_bytes, parse_bytes
from edge_runtime.warm_start.forward import WarmStart, calibrate, resolve_encoder_warm_start, warm_start_encoder

# Loss before/after is measured on at most this many training examples, the same ones both times.
TRAIN_PROBE = 256


@dataclass
class Run:
    """Everything a training loop needs, built once from the config."""

    config: TrainConfig
    spec: TaskSpec
    loaded: LoadedModel
    peft_model: torch.nn.Module
    objective: Objective
    method: Method
    lr: float
    device: torch.device
    train: list[Example]
    eval: list[Example]
    plan: Plan | None = None
    watchdog: MemoryWatchdog | None = None
    method_choice: str | None = None  # `--method auto`'s reasons
    candidates: list[method_choice.Candidate] | None = None  # `--method auto`'s, planned and timed
    frozen_bottom: FrozenBottom | None = None  # with lora_layers: the frozen layers' kept outputs
    average: TailAverage | None = None  # with tail_average: the mean of the last iterates


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' asked for, but torch sees no CUDA device")
    return torch.device(name)


def build_run(config: TrainConfig) -> Run:
    spec = get_task(config.task)
    template = prompt_template(spec, config.prompt, config.label_words, config.calibration)
    device = _device(config.device)
    train = training_examples(spec, config.train_split, config.k_shot, config.seed, config.data_dir)
    eval_ = evaluation_examples(spec, config.eval_examples, config.seed, config.data_dir)
    plan, candidates, plans = None, None, {}
    picked_by_auto = config.method == "auto"
    if picked_by_auto and config.resume:  # a resumed run keeps the method its checkpoint trained
        config = replace(config, method=saved_method(Path(config.out_dir) / "checkpoint") or "auto")
    if config.method == "auto":
        candidates, plans = _plan_candidates(config, device)
    elif config.memory_cap is not None:  # after the data, whose memory is then part of the baseline
        plan = _plan(config, device)
        config = _follow(config, plan)
    else:  # no cap: two-point ZO batches its perturbed copies wherever that pays
        config = replace(config, perturbations_per_pass=_perturbations_per_pass(config, device))
    if candidates is None:
        get_method(config.method).check_adapter(config.adapter)
    loaded = load_model(
        config.model,
        num_labels=spec.num_labels,
        dtype=load_dtype(config.precision),
        attn_implementation=config.attn_implementation,
        seed=config.seed,
    )
    peft_model = prepare_for_spec(loaded, config.adapter_spec(), config.prefix_tokens).to(device)
    frozen_bottom = _keep_frozen_bottom(config, loaded, peft_model)
    if not config.train_head:
        freeze_classifier(peft_model)
    objective = Objective(
        peft_model,
        head_for(loaded.kind, loaded.tokenizer, spec.kind, config.max_length, template),
        micro_batch=config.micro_batch,
        perturbations_per_pass=config.perturbations_per_pass or 1,
    )
    choice, timed = None, None
    if candidates is not None:
        timed = [
            c
            if c.refused
            else replace(
                c,
                step_seconds=method_choice.time_one_step(
                    c.method,
                    config.estimator,
                    objective,
                    train[: config.batch_size],
                    c.micro_batch or config.micro_batch,
                    c.perturbations_per_pass,
                    device,
                ),
            )
            for c in candidates
        ]
        chosen, choice = method_choice.choose(timed, loaded.kind)
        choice += f"; trains at lr {base_lr(config, chosen.method, loaded.kind, picked_by_auto=True):g}"
        if config.progress:
            print(f"method auto: {choice}", flush=True)
        plan = plans.get(chosen.method)
        config = (
            _follow(config, plan)
            if plan
            else replace(config, method=chosen.method, perturbations_per_pass=chosen.perturbations_per_pass)
        )
        objective.micro_batch = config.micro_batch
        objective.perturbations_per_pass = config.perturbations_per_pass
    watchdog = MemoryWatchdog(parse_bytes(config.memory_cap), device) if config.memory_cap is not None else None
    average = (
        TailAverage(objective.params, first_averaged_step(config.steps, config.tail_average))
        if config.tail_average
        else None
    )
    return Run(
        config,
        spec,
        loaded,
        peft_model,
        objective,
        build_method(config.method, config.estimator),
        base_lr(config, config.method, loaded.kind, picked_by_auto),
        device,
        train,
        eval_,
        plan,
        watchdog,
        choice,
        timed,
        frozen_bottom,
        average,
    )


def _keep_frozen_bottom(config: TrainConfig, loaded: LoadedModel, peft_model: torch.nn.Module) -> FrozenBottom | None:
    """With LoRA in the top layers only, keep the frozen layers' outputs, except under a memory cap
    (the planner does not count them)."""
    if config.lora_layers is None or config.bottom_cache is None or config.memory_cap is not None:
        return None
    if config.adapter != "lora" or loaded.kind != "causal_lm":
        return None
    return keep_frozen_bottom(peft_model, loaded.family, config.lora_layers, parse_bytes(config.bottom_cache))


def base_lr(config: TrainConfig, method: str, model_kind: str, picked_by_auto: bool) -> float:
    """The asked-for rate; else, for a method `--method auto` picked, the rate its steps to the target
    were measured at (its prediction holds only there, as in the coordinator's per-device choice);
    else the method's default."""
    if config.lr is not None:
        return config.lr
    measured = time_to_target.learning_rate(method, model_kind) if picked_by_auto else None
    return measured if measured is not None else get_method(method).default_lr


def _follow(config: TrainConfig, plan: Plan) -> TrainConfig:
    return replace(
        config,
        method=plan.method,
        max_length=plan.seq_len,
        micro_batch=plan.micro_batch,
        perturbations_per_pass=plan.perturbations_per_pass,
        eval_batch_size=plan.eval_batch,
    )


def _perturbations_per_pass(config: TrainConfig, device: torch.device) -> int:
    tokens = (config.micro_batch or config.batch_size) * config.max_length
    return copies_per_pass(config.method, config.estimator.queries, device.type, tokens, config.perturbations_per_pass)


def _plan_candidates(
    config: TrainConfig, device: torch.device
) -> tuple[list[method_choice.Candidate], dict[str, Plan]]:
    """`--method auto`'s candidates, each planned under the cap as if asked for by name (at the
    asked sequence length: methods are compared on the same examples)."""
    candidates, plans = [], {}
    for method in time_to_target.CANDIDATES:
        try:
            get_method(method).check_adapter(config.adapter)
        except UserError as refusal:
            candidates.append(method_choice.Candidate(method, refused=str(refusal)))
            continue
        if config.memory_cap is None:
            per_pass = _perturbations_per_pass(replace(config, method=method), device)
            candidates.append(method_choice.Candidate(method, perturbations_per_pass=per_pass))
            continue
        try:
            plan = _plan(
                replace(
                    config, method=method, allow_method_change=False, allow_shorter_sequences=False, progress=False
                ),
                device,
            )
        except UserError:
            candidates.append(method_choice.Candidate(method, refused=f"does not fit the {config.memory_cap} cap"))
            continue
        plans[method] = plan
        candidates.append(
            method_choice.Candidate(
                method,
                needs=required_bytes(plan.estimate),
                micro_batch=plan.micro_batch,
                perturbations_per_pass=plan.perturbations_per_pass,
            )
        )
    if all(c.refused for c in candidates):
        raise UserError(
            "method auto: no method can train this run; " + "; ".join(f"{c.method}: {c.refused}" for c in candidates)
        )
    return candidates, plans


def _plan(config: TrainConfig, device: torch.device) -> Plan:
    """Plan against what the cap leaves once the runtime is loaded; said before any model is."""
    cap = parse_bytes(config.memory_cap)
    memory.pin_allocator()
    memory.release_freed_memory()
    baseline = 0 if device.type == "cuda" else memory.rss_bytes()
    work = Workload(
        config.adapter_spec(),
        MethodSpec(config.method, config.estimator),
        batch=config.batch_size,
        seq_len=config.max_length,
        nan_guard=config.nan_guard,
        tail_average=config.tail_average > 0,
        perturbations_per_pass=_perturbations_per_pass(config, device),
    )
    plan = plan_under_cap(
        cap,
        baseline,
        work,
        eval_batch=config.eval_batch_size,
        allow_shorter_sequences=config.allow_shorter_sequences,
        allow_method_change=config.allow_method_change,
    )
    if config.progress:
        changed = "; ".join(plan.changes) or "as asked"
        print(
            f"memory plan: {format_bytes(plan.estimate.total)} estimated + {format_bytes(baseline)} runtime "
            f"under a cap of {format_bytes(cap)} ({changed})",
            flush=True,
        )
    return plan


class LastGood:
    """The most recent parameters known to give a finite loss (two buffers: the pending state
    is only known good once the step that starts from it succeeds). Two copies of the trainable
    tensors: nothing for LoRA, two model copies for full fine-tuning, hence `enabled`."""

    def __init__(self, params, enabled: bool = True) -> None:
        self.enabled = enabled
        self.pending = Snapshot(params) if enabled else None
        self.good = Snapshot(params) if enabled else None
        self.step = 0

    def before(self) -> None:
        if self.enabled:
            self.pending.save()

    def passed(self, step: int) -> None:
        self.pending, self.good = self.good, self.pending
        self.step = step

    def restore(self) -> None:
        """Back to the last state with a finite loss."""
        if self.enabled:
            self.good.load()

    def undo_step(self) -> None:
        """Back to the state before the current step."""
        if self.enabled:
            self.pending.load()


def train(config: TrainConfig) -> dict:
    return fit(build_run(config))


def fit(run: Run) -> dict:
    """Resume or warm-start, train until a stop reason, then save the checkpoint, adapter and summary."""
    started = time.perf_counter()
    config = run.config
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first_step, warm = _resume_or_warm_start(run, out_dir)
    probe = run.train[:TRAIN_PROBE]
    train_before, eval_before = _measure(run, probe), _measure(run, run.eval)
    if config.progress:
        print(
            f"warm start: {warm.describe()}; dev accuracy {eval_before.accuracy:.3f} on {len(run.eval)} examples "
            "before training",
            flush=True,
        )
    if run.plan is not None:
        _refit(run)
    loop = _train_steps(run, out_dir, first_step, eval_before)
    _checkpoint(run, out_dir, loop.step)  # the iterate and the mean: a resumed run goes on averaging
    if run.average and run.average.count:
        run.average.load_into_params()
    train_after, eval_after = _measure(run, probe), _measure(run, run.eval)
    save_adapter(
        run.peft_model,
        run.objective.head,
        out_dir / "adapter",
        model=config.model,
        card={
            "method": config.method,
            "steps": loop.step,
            "learning_rate": run.lr,
            "task": config.task,
            "training_examples": len(run.train),
            "warm_start": warm.describe(),
            "dev_accuracy": f"{eval_before.accuracy:.3f} before training, {eval_after.accuracy:.3f} after "
            f"({len(run.eval)} dev examples)",
        },
    )
    summary = _summary(
        run,
        loop.step - first_step,
        loop.forward_passes,
        loop.stopped,
        train_before,
        train_after,
        eval_before,
        eval_after,
        time.perf_counter() - started,
        out_dir,
        warm,
    )
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if config.out:
        Path(config.out).parent.mkdir(parents=True, exist_ok=True)
        Path(config.out).write_text(json.dumps(summary, indent=2))
    return summary


@dataclass
class Loop:
    """Where the step loop ended and why."""

    step: int  # steps done, counting a resumed run's earlier ones
    stopped: str = "completed"
    forward_passes: int = 0


def _resume_or_warm_start(run: Run, out_dir: Path) -> tuple[int, WarmStart]:
    """The step to start from and the head's start: a checkpoint's, or a fresh warm start."""
    if not run.config.resume:
        return 0, warm_start(run)
    progress, method_state = load_checkpoint(out_dir / "checkpoint", run.objective.params)
    run.method.load_state_dict(method_state)
    if run.average:
        run.average.load_state_dict(method_state)
    run.objective.head.load_constants(progress.head_constants or {})
    return progress.step, WarmStart("resumed")


def _measure(run: Run, examples: list[Example]) -> EvalResult:
    return evaluate(run.objective, examples, run.config.eval_batch_size, run.device)


def _train_steps(run: Run, out_dir: Path, first_step: int, eval_before: EvalResult) -> Loop:
    """Steps from `first_step` until the configured number or a stop reason: a non-finite loss (the
    last good adapter restored), an interrupt or a CUDA out-of-memory (the step undone), or the
    memory watchdog predicting the next step over the cap. One metrics line per step."""
    config, objective = run.config, run.objective
    sampler = BatchSampler(run.train, config.batch_size, config.seed)
    guard = LastGood(objective.params, config.nan_guard)
    guard.passed(first_step)
    loop, last_eval = Loop(first_step), eval_before
    with (
        open(out_dir / "metrics.jsonl", "a", buffering=1) as metrics,
        tqdm(
            total=config.steps, initial=first_step, disable=not config.progress, desc=config.method, dynamic_ncols=True
        ) as bar,
    ):
        for step in range(first_step, config.steps):
            loop.step = step
            batch = objective.encode(sampler.batch(step)).to(run.device)
            lr = learning_rate(run.lr, step, config.steps, config.lr_schedule, config.warmup_steps)
            guard.before()
            tick = time.perf_counter()
            if run.watchdog:
                run.watchdog.step_started()
            try:
                result = run.method.step(objective, batch, lr, step_seed(config.seed, step))
            except NonFiniteLoss as error:
                guard.restore()
                loop.stopped = (
                    f"non-finite loss at step {step} ({error}); adapter restored to the state before "
                    f"step {guard.step}, the last one with a finite loss; try a smaller lr"
                )
                return loop
            except KeyboardInterrupt:
                guard.undo_step()  # the interrupted step may have left the parameters half-updated
                loop.stopped = f"interrupted at step {step}; checkpoint saved, continue with --resume"
                return loop
            except torch.cuda.OutOfMemoryError:
                guard.undo_step()
                loop.stopped = f"memory cap: step {step} hit the CUDA allocator's limit; checkpoint saved before it"
                return loop
            guard.passed(step)
            if run.average:
                run.average.update(step + 1)
            loop.forward_passes += result.forward_passes
            record = {
                "step": step + 1,
                "loss": result.loss,
                "lr": lr,
                "step_seconds": time.perf_counter() - tick,
                "memory_bytes": memory.current_bytes(run.device),
            }
            if result.seeds:  # the step in seed-scalar form: with the lr, any iterate can be replayed
                record["seeds"], record["scalars"] = result.seeds, result.scalars
            if config.eval_every and (step + 1) % config.eval_every == 0:
                last_eval = _measure(run, run.eval)
                record["eval_accuracy"], record["eval_loss"] = last_eval.accuracy, last_eval.loss
                if run.average and run.average.count:  # what the run would save if it ended here
                    with run.average.swapped_in():
                        mean = _measure(run, run.eval)
                    record["average_eval_accuracy"], record["average_eval_loss"] = mean.accuracy, mean.loss
            if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
                _checkpoint(run, out_dir, step + 1)
            verdict = run.watchdog.step_finished() if run.watchdog else None
            if verdict:
                record["peak_bytes"] = verdict.last_peak
            metrics.write(json.dumps(record) + "\n")
            bar.set_postfix(
                loss=f"{result.loss:.4f}",
                acc=f"{last_eval.accuracy:.3f}",
                s_step=f"{record['step_seconds']:.2f}",
                mem=f"{record['memory_bytes'] / 2**20:.0f}MB",
            )
            bar.update(1)
            loop.step = step + 1
            if verdict and not verdict.fits:
                loop.stopped = (
                    f"memory cap: step {loop.step} peaked at {format_bytes(verdict.last_peak)} and the "
                    f"next is predicted at {format_bytes(verdict.predicted)}, over the cap of "
                    f"{format_bytes(run.watchdog.cap)}; checkpoint of step {loop.step} saved, continue "
                    "with --resume and a larger cap"
                )
                return loop
    return loop


def warm_start(run: Run) -> WarmStart:
    """The head training starts from, by forward passes over (a seeded sample of) the training examples."""
    config = run.config
    if run.loaded.kind == "causal_lm":
        examples = subsample(run.train, config.calibration_examples, config.seed)
        return calibrate(run.objective, examples, config.eval_batch_size, run.device)
    examples = subsample(run.train, config.warm_start_examples, config.seed)
    kind = resolve_encoder_warm_start(config.warm_start, run.spec, len(examples))
    return warm_start_encoder(run.objective, run.spec, kind, examples, config.eval_batch_size, run.device)


def _refit(run: Run) -> None:
    """After loading and the first evaluation passes, what the process holds is known, not estimated."""
    memory.release_freed_memory()
    held = memory.current_bytes(run.device)
    plan = refit_after_loading(run.plan, run.watchdog.cap, held)
    if plan is not run.plan:
        run.objective.micro_batch = plan.micro_batch
        run.objective.perturbations_per_pass = plan.perturbations_per_pass
        if run.config.progress:
            after = "; ".join(c for c in plan.changes if c.endswith("(after loading)"))
            print(f"memory plan after loading: the process holds {format_bytes(held)}; {after}", flush=True)
    run.plan = plan


def _checkpoint(run: Run, out_dir: Path, step: int) -> None:
    c = run.config
    save_checkpoint(
        out_dir / "checkpoint",
        run.objective.params,
        run.method.state_dict() | (run.average.state_dict() if run.average else {}),
        Progress(step=step, method=c.method, model=c.model, task=c.task, head_constants=run.objective.head.constants()),
        run.peft_model,
    )


def _summary(
    run: Run,
    steps: int,
    forward_passes: int,
    stopped: str,
    train_before: EvalResult,
    train_after: EvalResult,
    eval_before: EvalResult,
    eval_after: EvalResult,
    wall: float,
    out_dir: Path,
    warm: WarmStart,
) -> dict:
    c = run.config
    return {
        "method": c.method,
        "method_choice": run.method_choice,
        "model": c.model,
        "task": c.task,
        "steps": steps,
        "warm_start": warm.as_dict(),
        "train_examples": len(run.train),
        "eval_examples": len(run.eval),
        "batch_size": c.batch_size,
        "lr": run.lr,
        "mu": c.estimator.mu,
        "queries": c.estimator.queries,
        "seed": c.seed,
        "perturbations_per_pass": run.objective.perturbations_per_pass,
        "initial_train_loss": train_before.loss,
        "final_train_loss": train_after.loss,
        "eval_accuracy_before": eval_before.accuracy,
        "eval_accuracy_after": eval_after.accuracy,
        "eval_loss_before": eval_before.loss,
        "eval_loss_after": eval_after.loss,
        "forward_passes": forward_passes,
        "wall_time_s": wall,
        "peak_memory_bytes": run.watchdog.peak if run.watchdog else memory.peak_bytes(run.device),
        "memory_plan": None
        if run.plan is None
        else {
            "cap_bytes": run.watchdog.cap,
            "available_bytes": run.plan.available,
            "micro_batch": run.plan.micro_batch,
            "accumulation": run.plan.accumulation,
            "changes": list(run.plan.changes),
            "estimate_bytes": run.plan.estimate.as_dict(),
        },
        "trainable_params": sum(p.numel() for p in run.objective.params.values()),
        "bottom_cache": None
        if run.frozen_bottom is None
        else {
            "frozen_layers": run.frozen_bottom.split,
            "kept_sequences": len(run.frozen_bottom.kept),
            "kept_bytes": run.frozen_bottom.kept_bytes,
            "computed_sequences": run.frozen_bottom.computed,
        },
        "tail_average": None
        if not (run.average and run.average.count)
        else {"after_step": run.average.start, "iterates": run.average.count},
        "stopped": stopped,
        "adapter": str(out_dir / "adapter"),
        "config": config_values(c),
    }
