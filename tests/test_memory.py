"""The memory model, the cap planner and the watchdog, checked against what really happens."""

import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from edge_runtime.bench.examples import long_examples
from edge_runtime.errors import UserError
from edge_runtime.estimators import METHODS, EstimatorSettings, build_method, get_method
from edge_runtime.heads import head_for
from edge_runtime.memory import Workload, estimate, measure
from edge_runtime.memory.model import PassNotSimulated, _meta_model, meta_model, pass_peak
from edge_runtime.memory.planner import plan_under_cap, required_bytes
from edge_runtime.memory.tracker import LiveBytes
from edge_runtime.models import load_model
from edge_runtime.models.precision import load_dtype, prepare_model
from edge_runtime.objective import Objective
from edge_runtime.spec import AdapterSpec, MethodSpec
from edge_runtime.training.trainer import LastGood

SEQ, BATCH = 64, 4


def _real(precision="fp32"):
    loaded = load_model("tiny-llama", dtype=load_dtype(precision))
    return loaded, prepare_model(loaded, precision=precision)


@pytest.mark.parametrize("kind", ["forward", "jvp", "backward"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_pass_on_meta_tensors_allocates_what_it_does_on_real_ones(kind, precision):
    _, real = _real(precision)
    meta = _meta_model(AdapterSpec("tiny-llama", precision=precision), 2)
    trainable = lambda net: {n: p for n, p in net.named_parameters() if p.requires_grad}  # noqa: E731
    simulated, measured = (pass_peak(net, trainable(net), kind, BATCH, SEQ) for net in (meta, real))
    if kind == "jvp":
        # Real CPU kernels materialise some all-zero tangents (of activations ahead of the first
        # adapter) that stay symbolic on meta: +0.5 MB here, a few MB for SmolLM2.
        assert simulated <= measured <= 1.25 * simulated
    else:
        assert simulated == measured


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_estimate_matches_the_tensors_a_real_training_step_allocates(method, precision):
    """Everything a real step allocates beyond the loaded model (state, activations, tangents,
    gradients, the trainer's NaN guard) is within 15% of the estimate's same components."""
    loaded, model = _real(precision)
    spec, examples = long_examples("sst2", BATCH)
    objective = Objective(model, head_for(loaded.kind, loaded.tokenizer, spec.kind, SEQ))
    batch = objective.encode(examples)
    assert batch.inputs["input_ids"].shape == (BATCH, SEQ)
    peak = _tracked_steps(build_method(method, EstimatorSettings()), objective, batch)
    est = estimate(
        Workload(AdapterSpec("tiny-llama", precision=precision), MethodSpec(method), batch=BATCH, seq_len=SEQ)
    )
    predicted = est.total - est.weights - est.adapters - est.runtime
    tolerance = 0.25 if get_method(method).pass_kind == "jvp" else 0.15  # see the jvp case above
    assert peak == pytest.approx(predicted, rel=tolerance), est


def _tracked_steps(method, objective, batch, steps: int = 2) -> int:
    """Peak tensor bytes of a few steps under the trainer's NaN guard, as a run takes them."""
    with LiveBytes() as tracked:
        guard = LastGood(objective.params)
        for i in range(steps):
            guard.before()
            method.step(objective, batch, 1e-6, i)
            guard.passed(i)
    return tracked.peak


def test_estimate_components_follow_the_methods_state():
    work = Workload(AdapterSpec("smollm2-135m"), batch=8, seq_len=128)
    zo, adam, fg, fo = (estimate(work.with_method(m)) for m in ("zo-sgd", "zo-adam", "forward-grad", "fo-adam"))
    assert adam.optimizer_state - zo.optimizer_state == 2 * zo.adapters
    assert fg.tangents == zo.adapters and fo.gradients == zo.adapters
    assert zo.activations < fg.activations < fo.activations
    int8, fp16 = (estimate(replace(work, adapter=replace(work.adapter, precision=p))) for p in ("int8", "fp16"))
    assert int8.weights < 0.27 * zo.weights
    assert fp16.weights == pytest.approx(zo.weights / 2, rel=0.01)


def test_projection_to_the_papers_scales_keeps_their_ordering():
    """Spry reports backprop 33.9 GB vs 6.2 GB for Llama-2-7B LoRA; our model must at least agree
    that ZO stays near inference while backprop adds activations of the same order as the weights."""
    zo = estimate(Workload(AdapterSpec("llama-2-7b", precision="fp16"), MethodSpec("zo-sgd"), batch=8, seq_len=128))
    fo = estimate(Workload(AdapterSpec("llama-2-7b", precision="fp16"), MethodSpec("fo-adam"), batch=8, seq_len=128))
    assert 13e9 < zo.total < 14.5e9
    assert fo.total > zo.total + 2e9


def _baseline() -> int:
    measure.release_freed_memory()
    return measure.rss_bytes()


def test_planner_keeps_the_batch_when_it_fits_and_accumulates_when_it_does_not():
    work = Workload(AdapterSpec("tiny-llama"), MethodSpec("zo-sgd"), batch=32, seq_len=512)
    full = required_bytes(estimate(work))
    plan = plan_under_cap(10**9 + full, 10**9, work, eval_batch=32)
    assert (plan.micro_batch, plan.accumulation) == (32, 1)
    tight = required_bytes(estimate(replace(work, batch=8)))
    plan = plan_under_cap(10**9 + tight, 10**9, work, eval_batch=32)
    assert plan.micro_batch == 8 and plan.accumulation == 4 and required_bytes(plan.estimate) <= tight
    assert plan.eval_batch <= 8


def test_planner_switches_method_or_shortens_sequences_only_when_allowed():
    work = Workload(AdapterSpec("tiny-llama"), MethodSpec("fo-adam"), batch=16, seq_len=512)
    zo_one = required_bytes(estimate(replace(work.with_method("zo-sgd"), batch=1)))
    assert zo_one < required_bytes(estimate(replace(work, batch=1)))
    with pytest.raises(UserError, match="smallest cap that works"):
        plan_under_cap(10**9 + zo_one, 10**9, work, eval_batch=16)
    plan = plan_under_cap(10**9 + zo_one, 10**9, work, eval_batch=16, allow_method_change=True)
    assert (plan.method, plan.micro_batch, plan.accumulation) == ("zo-sgd", 1, 16)
    short_one = required_bytes(estimate(replace(work, batch=1, seq_len=128)))
    short = plan_under_cap(10**9 + short_one, 10**9, work, eval_batch=16, allow_shorter_sequences=True)
    assert (short.method, short.seq_len, short.micro_batch) == ("fo-adam", 128, 1)
    assert "max_length 512 -> 128" in short.changes


def test_micro_batches_give_the_same_loss_and_gradient_as_the_whole_batch(tiny_llama_objective):
    objective, _, _ = tiny_llama_objective
    from edge_runtime.tasks import load_split

    examples = load_split("sst2", "train")[:7]
    whole, split = objective.encode(examples), replace(objective, micro_batch=3).encode(examples)
    assert len(split) == 7 and len(split.parts) == 3
    torch.testing.assert_close(objective.loss(split), objective.loss(whole), rtol=1e-5, atol=1e-6)
    grads = []
    for batch in (whole, split):
        for p in objective.params.values():
            p.grad = None
        with torch.enable_grad():
            objective.backward(batch)
        grads.append(torch.cat([p.grad.flatten() for p in objective.params.values()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-bert"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_recomputed_blocks_give_the_same_gradient_at_less_activation_memory(model, precision):
    loaded = load_model(model, dtype=load_dtype(precision))
    module = prepare_model(loaded, precision=precision)
    spec, examples = long_examples("sst2", BATCH)
    objective = Objective(module, head_for(loaded.kind, loaded.tokenizer, spec.kind, SEQ))
    batch = objective.encode(examples)
    grads, peaks = [], []
    for method in ("fo-sgd", "fo-sgd-ckpt"):
        with LiveBytes() as tracked:
            loss = build_method(method, EstimatorSettings()).estimator.estimate(objective, batch, 0).loss
        peaks.append(tracked.peak)
        grads.append(torch.cat([p.grad.flatten() for p in objective.params.values()]))
        assert torch.isfinite(torch.as_tensor(loss))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
    assert peaks[1] < peaks[0]  # tiny models: a few blocks, so little to save (SmolLM2: 254 MB vs 2.3 GB)
    # The blocks are themselves again afterwards: a plain pass keeps every activation.
    assert all("forward" not in m.__dict__ for m in module.modules())


def test_the_memory_model_simulates_recomputed_blocks_as_a_real_pass_allocates():
    _, real = _real()
    meta = _meta_model(AdapterSpec("tiny-llama"), 2)
    trainable = lambda net: {n: p for n, p in net.named_parameters() if p.requires_grad}  # noqa: E731
    simulated, measured = (
        pass_peak(net, trainable(net), "backward", BATCH, SEQ, recompute=True) for net in (meta, real)
    )
    assert simulated == measured < pass_peak(meta, trainable(meta), "backward", BATCH, SEQ)


def test_planner_tries_checkpointed_backprop_before_a_forward_only_method():
    """Where backprop does not fit even at micro-batch 1, its checkpointed twin (the same gradient)
    comes before Forward-Grad and ZO."""
    work = Workload(AdapterSpec("smollm2-135m"), MethodSpec("fo-adam"), batch=16, seq_len=512)
    cap = 10**9 + required_bytes(estimate(replace(work.with_method("fo-adam-ckpt"), batch=4)))
    assert required_bytes(estimate(replace(work, batch=1))) > cap - 10**9
    plan = plan_under_cap(cap, 10**9, work, eval_batch=16, allow_method_change=True)
    assert (plan.method, plan.micro_batch, plan.accumulation) == ("fo-adam-ckpt", 4, 4)
    assert "method fo-adam -> fo-adam-ckpt" in plan.changes


def _train_capped(tmp_path, cap: int) -> subprocess.CompletedProcess:
    """`edgetune train` in a fresh process, so its baseline is a real process's, not pytest's."""
    args = [
        "train",
        "--model",
        "tiny-llama",
        "--k-shot",
        "8",
        "--eval-examples",
        "16",
        "--batch-size",
        "8",
        "--steps",
        "3",
        "--progress",
        "false",
        "--out-dir",
        str(tmp_path / "run"),
        "--memory-cap",
        str(cap),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "edge_runtime", *args], capture_output=True, text=True, env=env)


def test_a_cap_just_above_the_estimate_trains_and_one_below_is_refused_with_the_smallest_cap(tmp_path):
    work = Workload(AdapterSpec("tiny-llama"), MethodSpec("zo-sgd"), batch=8, seq_len=128)
    need, need_one = (required_bytes(estimate(replace(work, batch=b))) for b in (8, 1))
    refused = _train_capped(tmp_path, need_one)  # not even the runtime fits
    assert refused.returncode == 2, refused.stderr
    error = refused.stderr.strip().splitlines()[-1]
    assert "too small" in error and "smallest cap that works is" in error
    held = re.search(r"on top of the ([\d.]+) MB this process already holds", error)
    assert held, error
    baseline = float(held.group(1)) * 10**6
    below = _train_capped(tmp_path, int(baseline + need_one - 2e6))
    assert below.returncode == 2 and "smallest cap that works" in below.stderr
    trained = _train_capped(tmp_path, int(baseline + need + 2e6))
    assert trained.returncode == 0, trained.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped"] == "completed" and summary["memory_plan"]["micro_batch"] == 8
    assert summary["peak_memory_bytes"] < summary["memory_plan"]["cap_bytes"]


_LEAKING_RUN = """
import json, sys, torch
from dataclasses import replace
from edge_runtime.memory import Workload, estimate, measure
from edge_runtime.memory.planner import required_bytes
from edge_runtime.spec import AdapterSpec
from edge_runtime.training.trainer import build_run, fit
from tests.test_training import tiny_config
from pathlib import Path

config = tiny_config(Path(sys.argv[1]), model="tiny-llama", steps=40, method="zo-sgd", lr=1e-2)
measure.release_freed_memory()
need = required_bytes(estimate(Workload(AdapterSpec("tiny-llama"), batch=8, seq_len=config.max_length)))
cap = measure.rss_bytes() + need + 150 * 2**20
run = build_run(replace(config, memory_cap=str(cap)))
leaked, step = [], run.method.step

def leaking_step(*args, **kwargs):  # something in the step keeps 32 MB more every time
    leaked.append(torch.ones(8 * 2**20))
    return step(*args, **kwargs)

run.method.step = leaking_step
summary = fit(run)
print(json.dumps({"cap": cap, "stopped": summary["stopped"], "steps": summary["steps"]}))
"""


def test_a_run_pushed_over_its_cap_stops_before_crossing_and_keeps_its_adapter(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", _LEAKING_RUN, str(tmp_path)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["stopped"].startswith("memory cap"), result["stopped"]
    done_steps = result["steps"]
    assert 0 < done_steps < 40
    peaks = [json.loads(line)["peak_bytes"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(peaks) == done_steps and max(peaks) < result["cap"]
    progress = json.loads((tmp_path / "run" / "checkpoint" / "progress.json").read_text())
    assert progress["step"] == done_steps
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()


def test_mezo_full_fine_tuning_stays_near_inference_in_the_estimate_and_in_a_real_step():
    """In-place restore and no NaN guard (MeZO's configuration): one direction tensor beyond
    inference, estimated and allocated alike."""
    loaded = load_model("tiny-llama")
    model = prepare_model(loaded, adapter="full")
    spec, examples = long_examples("sst2", BATCH)
    objective = Objective(model, head_for(loaded.kind, loaded.tokenizer, spec.kind, SEQ))
    batch = objective.encode(examples)
    step = build_method("zo-sgd", EstimatorSettings(zo_restore="inplace"))
    with LiveBytes() as tracked:
        guard = LastGood(objective.params, enabled=False)
        for i in range(2):
            guard.before()
            step.step(objective, batch, 1e-6, i)
            guard.passed(i)
    inplace = MethodSpec("zo-sgd", EstimatorSettings(zo_restore="inplace"))
    est = estimate(Workload(AdapterSpec("tiny-llama", kind="full"), inplace, batch=BATCH, seq_len=SEQ, nan_guard=False))
    assert est.optimizer_state == 0 and est.weights < 1000  # only buffers (rotary frequencies) are frozen
    assert tracked.peak == pytest.approx(est.activations, rel=0.15)


def test_a_tail_average_costs_one_more_copy_of_the_trained_tensors():
    work = Workload(AdapterSpec("tiny-llama"), MethodSpec("zo-sgd"), batch=2, seq_len=16)
    plain, averaged = estimate(work), estimate(replace(work, tail_average=True))
    assert averaged.optimizer_state - plain.optimizer_state == plain.adapters > 0
    assert averaged.total - plain.total == plain.adapters


def test_after_loading_the_plan_shrinks_its_micro_batch_to_what_the_process_really_holds():
    from edge_runtime.memory.planner import refit_after_loading, step_bytes

    work = Workload(AdapterSpec("tiny-llama"), MethodSpec("zo-sgd"), batch=32, seq_len=512)
    plan = plan_under_cap(10**9 + required_bytes(estimate(work)), 10**9, work, eval_batch=32)
    assert plan.micro_batch == 32
    as_estimated = 10**9 + plan.estimate.weights + plan.estimate.adapters + plan.estimate.runtime
    assert refit_after_loading(plan, 10**9 + required_bytes(plan.estimate), as_estimated) is plan
    # The loaded process holds 20 MB more than estimated: fewer examples per pass, same batch.
    refit = refit_after_loading(plan, 10**9 + required_bytes(plan.estimate), as_estimated + 20 * 2**20)
    assert refit.micro_batch < 32 and refit.micro_batch * refit.accumulation >= 32
    assert "after loading" in refit.changes[-1]
    with pytest.raises(UserError, match="smallest cap that works is") as refused:
        refit_after_loading(plan, 10**9 + required_bytes(plan.estimate), 10**9 + required_bytes(plan.estimate))
    assert "once loaded" in str(refused.value)
    assert step_bytes(refit.estimate) < step_bytes(plan.estimate)


def test_the_trainer_runs_the_planned_micro_batches(tmp_path):
    from edge_runtime.training.trainer import build_run, fit
    from tests.test_training import tiny_config

    sizes, runs = [], {}
    for micro in (None, 3):
        run = build_run(tiny_config(tmp_path / str(micro), model="tiny-llama", steps=3, micro_batch=micro))
        loss = run.objective.head.loss

        def recording(forward, batch, loss=loss):
            sizes.append(len(batch))
            return loss(forward, batch)

        run.objective.head.loss = recording
        sizes.clear()
        fit(run)
        runs[micro] = (
            max(sizes),
            [
                json.loads(line)["loss"]
                for line in (tmp_path / str(micro) / "run" / "metrics.jsonl").read_text().splitlines()
            ],
        )
    assert runs[None][0] == 8 and runs[3][0] == 3
    assert runs[3][1] == pytest.approx(runs[None][1], rel=1e-5)


def test_a_pass_the_model_cannot_simulate_is_a_one_line_error_not_a_traceback():
    # transformers' prefix cache calls an in-place detach_ inside jvp on meta tensors.
    work = Workload(AdapterSpec("tiny-llama", kind="prefix"), MethodSpec("forward-grad"), batch=2, seq_len=16)
    with pytest.raises(PassNotSimulated, match="cannot simulate a jvp pass of forward-grad on tiny-llama"):
        estimate(work)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_batched_zo_step_allocates_what_the_estimate_says(precision):
    """The perturbed copies held through a batched pass and the pass's stacked activations, simulated
    as vmap runs them: the real step's tensors within 15% of the estimate, growing with the copies."""
    loaded, model = _real(precision)
    spec, examples = long_examples("sst2", BATCH)
    objective = Objective(model, head_for(loaded.kind, loaded.tokenizer, spec.kind, SEQ))
    batch = objective.encode(examples)
    predicted = {}
    for points in (1, 4):
        objective.perturbations_per_pass = points
        peak = _tracked_steps(build_method("zo-sgd", EstimatorSettings(queries=2)), objective, batch)
        est = estimate(
            Workload(
                AdapterSpec("tiny-llama", precision=precision),
                MethodSpec("zo-sgd"),
                batch=BATCH,
                seq_len=SEQ,
                perturbations_per_pass=points,
            )
        )
        predicted[points] = est.total - est.weights - est.adapters - est.runtime
        assert peak == pytest.approx(predicted[points], rel=0.15), (points, est)
    assert predicted[4] > predicted[1]


def test_planner_fills_what_the_micro_batch_leaves_with_perturbed_copies():
    work = Workload(AdapterSpec("tiny-llama"), MethodSpec("zo-sgd"), batch=8, seq_len=256, perturbations_per_pass=4)
    two = required_bytes(estimate(replace(work, perturbations_per_pass=2)))
    assert two < required_bytes(estimate(work))
    plan = plan_under_cap(10**9 + two, 10**9, work, eval_batch=8)
    assert (plan.micro_batch, plan.perturbations_per_pass) == (8, 2)
    assert "ZO perturbations per pass 4 -> 2" in plan.changes and plan.work.perturbations_per_pass == 2
    # Examples come first: where the whole batch does not fit, the copies go one at a time.
    tight = required_bytes(estimate(replace(work, batch=4, perturbations_per_pass=1)))
    plan = plan_under_cap(10**9 + tight, 10**9, work, eval_batch=8)
    assert (plan.micro_batch, plan.perturbations_per_pass) == (4, 1)
    # Backprop has no perturbed copies to batch.
    backprop = plan_under_cap(10**12, 10**9, work.with_method("fo-sgd"), eval_batch=8)
    assert backprop.perturbations_per_pass == 1 and not any("perturbations" in c for c in backprop.changes)


def test_the_estimate_counts_only_the_lora_tensors_that_train():
    every = Workload(AdapterSpec("tiny-llama"), MethodSpec("zo-sgd"), batch=8, seq_len=128)
    top = Workload(AdapterSpec("tiny-llama", lora_layers=1), MethodSpec("zo-sgd"), batch=8, seq_len=128)
    trained = {
        work.adapter.lora_layers: [name for name, p in meta_model(work).named_parameters() if p.requires_grad]
        for work in (every, top)
    }
    assert trained[1] and all(".layers.1." in name for name in trained[1])
    assert len(trained[None]) == 2 * len(trained[1])
    assert estimate(top).adapters * 2 == estimate(every).adapters
    # LoRA-FA: each A is kept, as a frozen weight, and only B trains.
    fa = estimate(Workload(AdapterSpec("tiny-llama", lora_fa=True), MethodSpec("zo-sgd"), batch=8, seq_len=128))
    whole = estimate(every)
    assert 0 < fa.adapters < whole.adapters
    assert whole.adapters - fa.adapters == fa.weights - whole.weights
    assert fa.optimizer_state < whole.optimizer_state
