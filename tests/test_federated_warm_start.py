"""The federated warm start: round 0 turns the devices' statistics into the head of their pooled
data, every later task carries its constants, a restarted coordinator keeps them, and statistics no
honest device could send are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coordinator.rounds import RoundKeeper
from coordinator.validation import RejectedUpdate
from edge_runtime.fleet.emulator import seeded_identities
from edge_runtime.local.work import update_header
from edge_runtime.objective import Objective
from edge_runtime.protocol import pb
from edge_runtime.warm_start import fit_head
from edge_runtime.warm_start.forward import feature_statistics
from tests.federation import Federation, small_config


def _warm_federation(tmp_path, **overrides) -> Federation:
    config = small_config(tmp_path, warm_start="centroids", rounds=2, local_steps=3, lr=1e-4, **overrides)
    return Federation(config, devices=3, identities=seeded_identities(0))


def test_round_zero_solves_the_head_of_the_devices_pooled_data(tmp_path):
    federation = _warm_federation(tmp_path)
    metrics = federation.run()
    warm = metrics[1]
    assert warm["round"] == 0 and warm["work"] == "statistics" and warm["updates"] == 3
    assert warm["warm_start"] == "centroids" and warm["slices_trained"] == 0
    assert metrics[2].get("work") != "statistics" and metrics[2]["updates"] == 3  # then training rounds

    # The same head, computed here from every device's own examples in one place.
    host = federation.host
    tasks = {d: pb.Task.FromString(blob) for d, (blob, _) in federation.keeper.ledger.assignments(0).items()}
    fresh = host.__class__(federation.config)
    objective = Objective(fresh.module, fresh.head)
    pooled = None
    for agent in federation.agents:
        task = tasks[agent.client.device_id]
        examples = agent.data.examples(task)[: task.statistics_examples]
        stats = feature_statistics(objective, examples, 32, torch.device("cpu"))
        pooled = stats if pooled is None else pooled.merged(stats)
    head = fit_head(pooled, "centroids")
    layout = host.head_layout()
    keeper = federation.keeper
    file, sha256 = next((f, s) for version, _, f, s in keeper.ledger.checkpoints() if version == 1)
    solved = keeper.store.read(1, file, sha256)  # the state right after round 0
    np.testing.assert_allclose(solved.params[layout.weight], head.weight, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(solved.params[layout.bias], head.bias, rtol=1e-4, atol=1e-5)
    assert solved.head_constants["logit_scale"] == pytest.approx(head.temperature)
    # Every task after the warm start carries its constants.
    later = pb.Task.FromString(next(iter(federation.keeper.ledger.assignments(1).values()))[0])
    assert later.HasField("logit_scale") and later.logit_scale == pytest.approx(head.temperature)


def test_a_restarted_coordinator_keeps_the_warm_starts_head_and_constants(tmp_path):
    federation = _warm_federation(tmp_path)
    federation.run()
    keeper = federation.keeper
    keeper.close()
    again = RoundKeeper(federation.config, federation.host, log=lambda _: None)
    assert again.head_constants == keeper.head_constants and again.version == keeper.version
    for name, value in keeper.params.items():
        np.testing.assert_array_equal(again.params[name], value)


def test_statistics_no_honest_device_could_send_are_refused(tmp_path):
    federation = _warm_federation(tmp_path)
    keeper = federation.keeper
    keeper.tick()
    agent = federation.agents[0]
    task = agent.client.get_task().task
    assert task.work == pb.Task.STATISTICS and not task.tensors
    result = agent._prepare(task).statistics(task, agent.data.examples(task))
    header = update_header(task, result)
    bloated = dict(result.deltas, sums=result.deltas["sums"] * 1000)
    with pytest.raises(RejectedUpdate, match="larger than their Gram"):
        keeper.accept(agent.client.device_id, header, bloated, 0)
    overclaimed = pb.UpdateHeader(task_id=header.task_id, round=header.round, examples=task.statistics_examples + 1)
    with pytest.raises(RejectedUpdate, match="claims statistics of"):
        keeper.accept(agent.client.device_id, overclaimed, result.deltas, 0)
    keeper.accept(agent.client.device_id, header, result.deltas, 0)  # the honest one goes through


def test_a_causal_lm_federation_is_calibrated_by_its_devices_mean_scores(tmp_path):
    federation = Federation(
        small_config(tmp_path, model="tiny-llama", calibration="centred", rounds=2, local_steps=2, lr=1e-4),
        devices=2,
        identities=seeded_identities(0),
    )
    metrics = federation.run()
    assert metrics[1]["warm_start"] == "calibration centred"
    offsets = federation.keeper.head_constants["score_offsets"]
    assert len(offsets) == 2 and sum(offsets) == pytest.approx(0.0, abs=1e-6) and offsets[0] != 0
    later = pb.Task.FromString(next(iter(federation.keeper.ledger.assignments(1).values()))[0])
    assert list(later.score_offsets) == pytest.approx(offsets)
    assert later.adapter.prompt == "default"


def test_a_zero_shot_head_needs_no_statistics_round(tmp_path):
    federation = Federation(
        small_config(tmp_path, warm_start="zero-shot", rounds=1, local_steps=2, lr=1e-4),
        devices=2,
        identities=seeded_identities(0),
    )
    metrics = federation.run()
    assert metrics[1].get("work") != "statistics"
    assert federation.keeper.head_constants == {"logit_scale": 20.0}
