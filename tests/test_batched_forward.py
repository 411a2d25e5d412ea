"""Devices in lockstep, their forward passes through the shared base as one batch: the same losses,
directional derivatives and fleet rounds as devices that run alone."""

import threading
import warnings

import pytest
import torch

from edge_runtime.fleet import batched_forward
from edge_runtime.fleet.batched_forward import BatchedForward, LockstepObjective
from edge_runtime.fleet.lockstep import Lockstep
from edge_runtime.local.torch_model import TorchModel
from edge_runtime.objective import Objective
from edge_runtime.spec import AdapterSpec
from edge_runtime.tasks import load_split
from tests.test_fleet import fleet_config


def test_lockstep_serves_every_waiting_job_together_in_job_order():
    served: list[list[tuple]] = []

    def serve(requests):
        served.append(list(requests))
        return [f"{job}:{n}" for job, n in requests]

    def job(name: str, requests: int):
        def run():
            assert threading.current_thread() is not threading.main_thread()
            return [Lockstep.active().request((name, n)) for n in range(requests)]

        return run

    results = Lockstep(serve).run([job("a", 3), job("b", 1), job("c", 2)])
    assert results == [["a:0", "a:1", "a:2"], ["b:0"], ["c:0", "c:1"]]
    assert served == [[("a", 0), ("b", 0), ("c", 0)], [("a", 1), ("c", 1)], [("a", 2)]]
    assert Lockstep.active() is None  # only jobs run inside one


def test_lockstep_raises_a_jobs_error_after_the_others_finish_and_a_serving_error_in_the_jobs():
    finished = []

    def failing():
        Lockstep.active().request(1)
        raise ValueError("job failed")

    def steady():
        Lockstep.active().request(2)
        Lockstep.active().request(3)
        finished.append(True)

    with pytest.raises(ValueError, match="job failed"):
        Lockstep(lambda requests: list(requests)).run([failing, steady])
    assert finished == [True]

    def refuse(requests):
        raise RuntimeError("cannot serve")

    caught = []

    def catching():
        try:
            Lockstep.active().request(0)
        except RuntimeError as error:
            caught.append(str(error))
        return "went on"

    assert Lockstep(refuse).run([catching, catching]) == ["went on", "went on"]
    assert caught == ["cannot serve", "cannot serve"]


def _devices(model: str, task: str, count: int, precision: str = "fp32"):
    """A shared model, and `count` devices each with its own adapter and batch."""
    shared = TorchModel(AdapterSpec(model, task, precision=precision, max_length=48))
    examples = load_split(task, "train", None)
    generator = torch.Generator().manual_seed(0)
    adapters = [
        {name: p.detach() + 0.05 * torch.randn(p.shape, generator=generator) for name, p in shared.params.items()}
        for _ in range(count)
    ]
    objective = Objective(shared.module, shared.head)
    batches = [objective.encode(examples[4 * i : 4 * i + 4]) for i in range(count)]
    return shared, adapters, batches


def _in_lockstep(shared, adapters, batches, trained, tangents, max_devices=8, free=10**12, width_step=None):
    serve = BatchedForward(max_devices, lambda: free, width_step)

    def job(i):
        def run():
            adapter = adapters[i]
            objective = LockstepObjective(
                shared.module,
                shared.head,
                params={n: adapter[n] for n in trained},
                adapter=adapter,
                activation_bytes=1000,
            )
            loss = objective.loss(batches[i]).item()
            _, derivative = objective.jvp(batches[i], objective.params, tangents[i])
            return loss, derivative.item()

        return run

    return Lockstep(serve).run([job(i) for i in range(len(adapters))]), serve.stats


def _alone(shared, adapter, batch, trained, tangent):
    objective = Objective(shared.module, shared.head)
    with torch.no_grad():
        loss = objective.functional_loss(adapter, batch).item()
    frozen = {n: t for n, t in adapter.items() if n not in trained}
    _, derivative = torch.func.jvp(
        lambda p: objective.functional_loss({**frozen, **p}, batch), ({n: adapter[n] for n in trained},), (tangent,)
    )
    return loss, derivative.item()


@pytest.mark.parametrize(
    "model,task,precision",
    [
        ("tiny-bert", "sst2", "fp32"),
        ("tiny-llama", "sst2", "fp32"),
        ("tiny-bert", "copa", "fp32"),
        ("tiny-llama", "copa", "fp32"),
        ("tiny-llama", "sst2", "int8"),
    ],
)
def test_batched_passes_equal_each_devices_own_pass(model, task, precision):
    """Encoder and decoder heads, one-token label words and multi-token candidates (batched extras),
    batches of different widths, an int8 base (its matmul has its own vmap rule)."""
    shared, adapters, batches = _devices(model, task, 3, precision)
    widths = {int(b.inputs["input_ids"].shape[-1]) for b in batches}
    assert len(widths) > 1  # the batched pass pads them to one width
    names = list(shared.params)
    trained = names[:2]
    tangents = [{n: torch.randn(adapters[i][n].shape) for n in trained} for i in range(3)]
    results, stats = _in_lockstep(shared, adapters, batches, trained, tangents)
    for i, (loss, derivative) in enumerate(results):
        expected_loss, expected_derivative = _alone(shared, adapters[i], batches[i], trained, tangents[i])
        assert loss == pytest.approx(expected_loss, rel=1e-5, abs=1e-6)
        assert derivative == pytest.approx(expected_derivative, rel=1e-4, abs=1e-5)
    assert stats.device_passes == 6
    if (model, task) == ("tiny-llama", "copa"):
        return  # candidates of other token lengths give other shapes: those batches go apart
    assert stats.passes == 2  # all three devices' losses in one pass, their jvps in another
    _, stats = _in_lockstep(shared, adapters, batches, trained, tangents, width_step=1)
    assert stats.passes == 2 * len(widths)  # with width_step 1 only batches of equal width go together


def test_same_shaped_batches_go_through_in_one_pass_and_chunks_respect_the_limits():
    shared, adapters, _ = _devices("tiny-bert", "sst2", 4)
    objective = Objective(shared.module, shared.head)
    examples = load_split("sst2", "train", None)
    batch = objective.encode(examples[:4])
    trained = list(shared.params)[:1]
    tangents = [{n: torch.ones(adapters[i][n].shape) for n in trained} for i in range(4)]
    _, stats = _in_lockstep(shared, adapters, [batch] * 4, trained, tangents)
    assert (stats.passes, stats.device_passes) == (2, 8)  # one loss pass and one jvp pass for all four
    _, stats = _in_lockstep(shared, adapters, [batch] * 4, trained, tangents, max_devices=3)
    assert (stats.passes, stats.device_passes) == (4, 8)  # 3 + 1 devices, twice
    _, stats = _in_lockstep(shared, adapters, [batch] * 4, trained, tangents, free=1500)
    assert (stats.passes, stats.device_passes) == (8, 8)  # one device's activations fit the budget at a time


def test_a_model_that_cannot_be_batched_falls_back_to_one_pass_per_device_with_a_warning(monkeypatch):
    shared, adapters, batches = _devices("tiny-bert", "sst2", 2)

    def no_batching_rule(chunk):
        raise RuntimeError("Batching rule not implemented for aten::something")

    monkeypatch.setattr(batched_forward, "_vmapped", no_batching_rule)
    trained = list(shared.params)[:1]
    tangents = [{n: torch.ones(adapters[i][n].shape) for n in trained} for i in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results, stats = _in_lockstep(shared, adapters, [batches[0]] * 2, trained, tangents)
    assert any("cannot be batched" in str(w.message) for w in caught)
    assert results[0][0] == pytest.approx(_alone(shared, adapters[0], batches[0], trained, tangents[0])[0], rel=1e-6)
    assert stats.devices_per_pass == 1.0


@pytest.mark.parametrize("planner,method", [("zo-seed", "zo-sgd"), ("spry", "forward-grad")])
def test_a_fleet_in_lockstep_runs_the_same_rounds_as_devices_one_at_a_time(tmp_path, planner, method):
    from edge_runtime.fleet import accounting
    from edge_runtime.fleet.emulator import run_fleet

    results = {}
    for batch_devices in (1, 4):
        # Each run measures its first step of each kind itself (in lockstep: that device's step runs alone).
        accounting._MEASURED.clear()
        config = fleet_config(
            tmp_path / str(batch_devices),
            model="tiny-llama",
            planner=planner,
            method=method,
            batch_devices=batch_devices,
        )
        results[batch_devices] = run_fleet(config, log=lambda _: None)
    alone, batched = results[1], results[4]
    assert batched.batching["device_passes"] > batched.batching["passes"] > 0  # several devices per pass
    assert alone.batching["passes"] == 0
    for a, b in zip(alone.rounds, batched.rounds, strict=True):
        assert a["outcomes"] == b["outcomes"] == {"trained": 4}
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["eval_accuracy"] == a["eval_accuracy"]
    for a, b in zip(alone.devices, batched.devices):
        assert b["accounted_peak"] == pytest.approx(a["accounted_peak"], rel=0.02)
    assert all(d["accounted_peak"] <= d["memory_cap"] for d in batched.devices)


def _three_devices_in_lockstep(estimator, per_pass: int):
    """Three devices' estimates of one step, each on its own adapter, in lockstep with `per_pass` copies
    per pass; beside each, the estimate that device makes alone with one copy at a time."""
    shared, adapters, _ = _devices("tiny-llama", "sst2", 3)
    batch = Objective(shared.module, shared.head).encode(load_split("sst2", "train", None)[:4])
    trained = list(shared.params)[:2]
    serve = BatchedForward(16, lambda: 10**12, None)

    def job(i):
        def run():
            objective = LockstepObjective(
                shared.module,
                shared.head,
                params={n: adapters[i][n] for n in trained},
                adapter=adapters[i],
                activation_bytes=1000,
                perturbations_per_pass=per_pass,
            )
            return estimator().estimate(objective, batch, seed=i).scalars

        return run

    together = Lockstep(serve).run([job(i) for i in range(3)])
    alone = []
    for i in range(3):
        objective = LockstepObjective(
            shared.module,
            shared.head,
            params={n: adapters[i][n].clone() for n in trained},
            adapter={n: t.clone() for n, t in adapters[i].items()},
            solo=True,
        )
        objective.adapter.update(objective.params)
        alone.append(estimator().estimate(objective, batch, seed=i).scalars)
    return together, alone, serve.stats


def test_each_devices_perturbed_copies_go_through_with_the_other_devices_in_one_pass():
    """Batched two-point ZO inside a lockstep: 3 devices x 2 queries x (+mu, -mu) = 12 evaluations in one
    pass, each device's scalars those of its own one-at-a-time step."""
    from edge_runtime.estimators.zo import TwoPointZO

    together, alone, stats = _three_devices_in_lockstep(lambda: TwoPointZO(mu=1e-2, queries=2), per_pass=4)
    assert stats.passes == 1 and stats.device_passes == 12
    for scalars, expected in zip(together, alone, strict=True):
        assert scalars == pytest.approx(expected, rel=1e-3, abs=1e-4)


def test_each_devices_tangents_go_through_with_the_other_devices_in_one_pass():
    """Batched Forward-Grad inside a lockstep: 3 devices x 2 tangents in one jvp pass, each device's
    derivatives those of its own tangents one at a time."""
    from edge_runtime.estimators.forward_grad import ForwardGrad

    together, alone, stats = _three_devices_in_lockstep(lambda: ForwardGrad(queries=2, fallback_mu=1e-2), per_pass=2)
    assert stats.passes == 1 and stats.device_passes == 6
    for scalars, expected in zip(together, alone, strict=True):
        assert scalars == pytest.approx(expected, rel=1e-4, abs=1e-5)
