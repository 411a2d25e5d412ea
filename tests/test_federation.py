"""Federated training in one process (the in-process transport drives the real service):
learning, seed-and-scalar uploads, refusals, and recovery from a lost coordinator."""

import json
from dataclasses import replace

import grpc
import numpy as np
import pytest

from coordinator.replay import replay_update
from coordinator.rounds import RoundKeeper
from coordinator.service import CoordinatorService
from edge_runtime.agent.client import CallRejected
from edge_runtime.errors import UserError
from edge_runtime.fleet.emulator import seeded_identities
from edge_runtime.local.work import update_header
from edge_runtime.protocol import PROTOCOL_KEY, PROTOCOL_VERSION, CallFailed, pb
from edge_runtime.protocol.specs import method_of
from edge_runtime.seeded.draws import FINGERPRINT
from edge_runtime.spec import EstimatorSettings, MethodSpec
from tests.federation import LAPTOP, Federation, small_config


def test_spry_lowers_the_merged_adapters_training_loss_and_trains_every_slice(tmp_path):
    # Seeded ids: the plan (and so the run) depends on them, and a test must not depend on luck.
    federation = Federation(small_config(tmp_path, rounds=6, local_steps=20, lr=1e-2), identities=seeded_identities(0))
    metrics = federation.run()
    initial, rounds = metrics[0], metrics[1:]
    assert initial["round"] == -1 and len(rounds) == 6
    assert all(m["updates"] == 4 and m["slices_trained"] == m["slices_total"] == 5 for m in rounds)
    assert rounds[-1]["train_loss"] < initial["train_loss"] - 0.015, [m["train_loss"] for m in metrics]
    assert (tmp_path / "coordinator" / "adapter" / "adapter_model.safetensors").exists()


def test_seed_uploads_cost_under_a_kilobyte_for_a_hundred_steps(tmp_path):
    """(That the coordinator rebuilds a device's own update from them is checked in test_coordinator_parts.)"""
    seeds = Federation(
        small_config(tmp_path / "seeds", planner="zo-seed", rounds=1, local_steps=100, batch_size=4, lr=1e-3)
    )
    dense = Federation(
        small_config(
            tmp_path / "dense", planner="fedavg-full", method="zo-sgd", rounds=1, local_steps=100, batch_size=4, lr=1e-3
        )
    )
    seeds_round, dense_round = seeds.run()[1], dense.run()[1]
    assert seeds_round["updates"] == 4 and seeds_round["bytes_up_per_update"] < 1000
    assert dense_round["bytes_up_per_update"] > 20 * seeds_round["bytes_up_per_update"]
    initial = seeds.host.__class__(seeds.config).state()
    assert any(not np.array_equal(value, initial[name]) for name, value in seeds.keeper.params.items())


def _submit_for(federation, agent):
    """Run one task on `agent` by hand, returning (task, result) without submitting."""
    task = agent.client.get_task().task
    backend = agent._prepare(task)
    return task, backend.train(task, agent.data.examples(task))


def test_the_coordinator_replays_a_seeds_upload_into_the_devices_own_update_with_the_tasks_settings(tmp_path):
    """The device builds its method from its task's MethodSpec and the coordinator replays the seeds
    with the same spec: with a non-default mu, queries and block grouping, the merged state moves by
    exactly the device's own update."""
    settings = EstimatorSettings(mu=5e-3, queries=3, zo_blocks="tensor")
    federation = Federation(
        small_config(
            tmp_path,
            planner="zo-seed",
            method="zo-sgd-block",
            rounds=1,
            local_steps=4,
            batch_size=4,
            estimator=settings,
        ),
        devices=1,
    )
    agent = federation.agents[0]
    federation.keeper.tick()
    start = {name: value.copy() for name, value in federation.keeper.params.items()}
    task, result = _submit_for(federation, agent)
    assert method_of(task) == MethodSpec("zo-sgd-block", settings) and task.upload == pb.Task.SEEDS
    assert agent.client.submit(update_header(task, result), {}).accepted
    assert federation.keeper.version == 1  # the round merged its one update
    for name, delta in result.deltas.items():
        np.testing.assert_allclose(federation.keeper.params[name] - start[name], delta, rtol=1e-4, atol=1e-7)
    # Replayed with the default grouping, the same seeds and scalars give another update.
    by_layer = MethodSpec("zo-sgd-block", replace(settings, zo_blocks="layer"))
    shapes = {name: delta.shape for name, delta in result.deltas.items()}
    other = replay_update(shapes, result.scalars, seed=task.seed, lr=task.lr, method=by_layer)
    assert not all(np.allclose(other[name], delta, rtol=1e-4, atol=1e-7) for name, delta in result.deltas.items())


def test_late_replayed_and_foreign_updates_are_rejected_and_logged(tmp_path):
    federation = Federation(small_config(tmp_path, rounds=2, quorum=1.0), devices=2)
    first, second = federation.agents
    federation.keeper.tick()
    task, result = _submit_for(federation, first)
    header = update_header(task, result)
    assert first.client.submit(header, result.deltas).accepted
    stored = federation.keeper.ledger.update(0, first.client.device_id)
    # The same update sent again is a retry whose answer was lost: acknowledged, stored once.
    assert first.client.submit(header, result.deltas).accepted
    other = {name: value * 2 for name, value in result.deltas.items()}
    replayed = first.client.submit(header, other)
    assert not replayed.accepted and "already" in replayed.reason
    foreign = second.client.submit(header, result.deltas)  # another device's task
    assert not foreign.accepted
    second.work_once()  # round 0 closes
    federation.keeper.tick()
    late = first.client.submit(header, other)
    assert not late.accepted and "not open" in late.reason
    assert len(federation.keeper.ledger.rejections()) == 3
    assert len(federation.keeper.ledger.updates(0)) == 2
    assert federation.keeper.ledger.update(0, first.client.device_id) == stored


def test_calls_without_the_right_token_version_or_secret_are_refused(tmp_path):
    federation = Federation(small_config(tmp_path, join_secret="s3cret"), devices=0)
    service = federation.service
    register = pb.RegisterRequest(
        protocol_version=PROTOCOL_VERSION, join_secret="s3cret", profile=LAPTOP, direction_fingerprint=FINGERPRINT
    )
    reply = service.register(register)
    good = {"x-edgetune-device": reply.device_id, "x-edgetune-token": reply.token, PROTOCOL_KEY: str(PROTOCOL_VERSION)}
    service.heartbeat(good)
    cases = [
        (lambda: service.heartbeat({**good, "x-edgetune-token": "forged"}), grpc.StatusCode.UNAUTHENTICATED),
        (
            lambda: service.heartbeat({**good, PROTOCOL_KEY: str(PROTOCOL_VERSION - 1)}),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (
            lambda: service.register(pb.RegisterRequest(**{**_fields(register), "join_secret": "guess"})),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            lambda: service.register(pb.RegisterRequest(**{**_fields(register), "direction_fingerprint": "x"})),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (
            lambda: service.register(
                pb.RegisterRequest(**{**_fields(register), "device_id": reply.device_id, "token": "stolen"})
            ),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
    ]
    for call, code in cases:
        with pytest.raises(CallFailed) as failed:
            call()
        assert failed.value.code == code, failed.value.message
    again = service.register(
        pb.RegisterRequest(**{**_fields(register), "device_id": reply.device_id, "token": reply.token})
    )
    assert again.device_id == reply.device_id  # a returning device keeps its id


def _fields(message):
    return {f.name: v for f, v in message.ListFields()}


def test_an_agent_refuses_a_task_for_tensors_its_model_lacks(tmp_path):
    federation = Federation(small_config(tmp_path, rounds=1, quorum=1.0), devices=1)
    agent = federation.agents[0]
    federation.keeper.tick()
    forged = federation.keeper.assigned_task(agent.client.device_id)
    forged.tensors[:] = ["not.a.tensor"]
    agent.client.get_task = lambda: pb.GetTaskReply(task=forged)  # a coordinator that names a tensor it lacks
    outcome, _ = agent.work_once()
    assert outcome == "refused"
    assert federation.keeper.open_round is None or federation.keeper.finished  # a refusal accounts for the device


def test_a_finished_coordinator_knows_when_every_online_device_has_heard_it_is_over(tmp_path):
    # The server serves on after the last round until then, so an agent still training a task of
    # that round hears "done" instead of retrying against a closed port.
    federation = Federation(small_config(tmp_path, rounds=1, quorum=0.5), devices=2)
    federation.run()
    assert federation.keeper.finished and not federation.keeper.everyone_told_done()
    assert federation.agents[0].work_once()[0] == "done"
    assert not federation.keeper.everyone_told_done()
    assert federation.agents[1].work_once()[0] == "done"
    assert federation.keeper.everyone_told_done()


def test_a_restarted_coordinator_resumes_the_open_round_with_every_accepted_update(tmp_path):
    config = small_config(tmp_path, rounds=2, quorum=1.0)
    federation = Federation(config, devices=3)
    federation.keeper.tick()
    federation.agents[0].work_once()
    federation.agents[1].work_once()
    accepted = {u.device_id for u in federation.keeper.ledger.updates(0)}
    assert len(accepted) == 2
    federation.keeper.close()
    # A new coordinator on the same folder, as after kill -9: the agents go on talking to it.
    restarted = RoundKeeper(config, federation.host, log=lambda _: None)
    assert restarted.open_round is not None and restarted.open_round.round == 0
    assert restarted.open_round.submitted() == accepted
    service = CoordinatorService(restarted)
    for agent in federation.agents:
        agent.client.service = service
    assert federation.agents[0].work_once()[0] == "wait"  # already submitted: no second task
    federation.keeper, federation.service = restarted, service
    metrics = federation.run()
    assert [m["round"] for m in metrics] == [-1, 0, 1] and metrics[1]["updates"] == 3
    assert {u.device_id for u in restarted.ledger.updates(0)} >= accepted


def test_a_damaged_latest_checkpoint_is_replaced_by_re_merging_the_ledger(tmp_path):
    config = small_config(tmp_path, rounds=2)
    federation = Federation(config)
    federation.run()
    final = {k: v.copy() for k, v in federation.keeper.params.items()}
    federation.keeper.close()
    version, _, file, _ = _latest(config)
    path = tmp_path / "coordinator" / "checkpoints" / file
    path.write_bytes(path.read_bytes()[:100])
    logged = []
    restarted = RoundKeeper(config, federation.host, log=logged.append)
    assert restarted.version == version and any("torn or damaged" in line for line in logged)
    for name, value in final.items():
        np.testing.assert_array_equal(restarted.params[name], value)


def _latest(config):
    from pathlib import Path

    from coordinator.ledger import Ledger

    ledger = Ledger(Path(config.state_dir) / "ledger.sqlite")
    try:
        return ledger.checkpoints()[0]
    finally:
        ledger.close()


def test_in_process_calls_fail_like_grpc_calls(tmp_path):
    federation = Federation(small_config(tmp_path), devices=1)
    agent = federation.agents[0]
    agent.client.token = "wrong"
    with pytest.raises(CallRejected) as rejected:
        agent.client.get_task()
    assert rejected.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_one_coordinator_per_port_and_per_state_folder(tmp_path):
    from dataclasses import replace

    from coordinator.server import CoordinatorServer
    from edge_runtime.errors import UserError

    federation = Federation(small_config(tmp_path / "a"), devices=0)
    first = CoordinatorServer(replace(federation.config, listen="127.0.0.1:0"), federation.keeper).start()
    try:
        busy = replace(federation.config, listen=f"127.0.0.1:{first.port}", state_dir=str(tmp_path / "b"))
        other = RoundKeeper(busy, federation.host, log=lambda _: None)
        with pytest.raises(UserError, match="the port is in use"):
            CoordinatorServer(busy, other)
        other.close()
        with pytest.raises(UserError, match="another coordinator .* is using the state folder"):
            RoundKeeper(federation.config, federation.host, log=lambda _: None)
    finally:
        first.stop()
    RoundKeeper(federation.config, federation.host, log=lambda _: None).close()  # free once the first stopped


@pytest.mark.parametrize("listen", ["nonsense", "256.1.1.1:50051", "127.0.0.1:99999", ":abc", "host name:1"])
def test_a_listen_address_that_cannot_be_is_refused_before_anything_binds(tmp_path, listen):
    from edge_runtime.errors import UserError

    with pytest.raises(UserError, match="listen"):
        small_config(tmp_path, listen=listen)


def test_method_auto_trains_each_device_with_the_method_it_can_afford(tmp_path):
    """A laptop trains its slices by backprop, a device whose memory only holds a forward-only step
    trains by forward passes; both updates merge in one round."""
    from coordinator.capacity import memory_needed
    from edge_runtime.costs.time_to_target import learning_rate

    federation = Federation(small_config(tmp_path, method="auto", rounds=1), devices=1)
    keeper = federation.keeper
    smallest = min(s.nbytes for s in keeper.slices)
    need = {name: memory_needed(shape, smallest) for name, shape in keeper.strategy.method_shapes.items()}
    small = pb.DeviceProfile()
    small.CopyFrom(LAPTOP)
    small.memory_cap_bytes = (need["zo-sgd"] + need["fo-adam-ckpt"]) // 2
    federation.agents.append(federation.agent(small))
    metrics = federation.run()[1]
    methods = sorted(metrics["methods"].values())
    assert metrics["method"] == "auto" and metrics["updates"] == 2
    assert methods[0] == "fo-adam" and methods[1] in ("forward-grad", "zo-sgd"), methods
    reasons = next(r for r in keeper.ledger.rounds() if r.round == metrics["round"]).plan["methods"]
    assert len(reasons) == 2 and all("s/step" in why for why in reasons.values())
    # Each trains at the rate its steps to the target were measured at, not at one rate for both.
    tasks = [pb.Task.FromString(blob) for blob, _ in keeper.ledger.assignments(metrics["round"]).values()]
    assert {method_of(t).name: t.lr for t in tasks}["fo-adam"] == learning_rate("fo-adam", "encoder") == 2e-4


def test_method_auto_refuses_a_planner_that_uploads_seeds(tmp_path):
    with pytest.raises(UserError, match="method auto .* uploads seeds"):
        Federation(small_config(tmp_path, method="auto", planner="zo-seed"), devices=0)


def test_a_federation_with_lora_in_the_top_layer_only_trains_that_layer_on_every_device(tmp_path):
    federation = Federation(small_config(tmp_path, rounds=1, quorum=1.0, lora_layers=1), devices=2)
    metrics = federation.run()
    assert metrics[-1]["updates"] == 2
    (spec,) = federation.models
    assert spec.lora_layers == 1
    names = list(federation.models[spec].params)
    assert names and all(".layer.1." in name or "classifier" in name for name in names), names
    saved = json.loads((tmp_path / "coordinator" / "adapter" / "adapter_config.json").read_text())
    assert saved["layers_to_transform"] == [1]


def test_lora_layers_below_one_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match="lora_layers must be positive, got 0"):
        small_config(tmp_path, lora_layers=0)
