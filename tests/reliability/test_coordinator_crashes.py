"""The coordinator stopped dead between any two of its durable steps (the crash points of
coordinator/faults.py), then restarted on the same folder: every update it had accepted is still
there, the rounds resume with the same plan, and the run ends with the very state (bit for bit) of
a run that never crashed. In process (a crash point raises instead of exiting), plus one real
process that os._exit()s at a crash point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.faults import CRASH_ENV, CRASH_EXIT_CODE, POINTS, crash_point
from tests.reliability.harness import SimulatedCrash, accepted_updates, arm_crash, restart, small_federation, snapshot

# Which time each point is reached, counted once the devices have joined: 3 devices x 2 rounds.
CRASHES = {
    "update-committed@4": "the first update of round 1 is committed, its device unanswered",
    "round-opened@2": "round 1 is in the ledger, no device has its task",
    "round-merged@1": "round 0 is merged in memory only",
    "checkpoint-staged@2": "the last round's checkpoint is written beside its final name",
    "checkpoint-renamed@1": "round 0's checkpoint is in place, the ledger does not know it",
    "round-closed@2": "the last round is closed; the metrics line and the adapter export are not written",
}


def test_every_crash_point_is_exercised():
    assert {crash.partition("@")[0] for crash in CRASHES} == set(POINTS)


def test_a_crash_point_that_is_not_armed_does_nothing_and_a_misspelt_one_is_refused(monkeypatch):
    monkeypatch.delenv(CRASH_ENV, raising=False)
    crash_point("round-merged")
    with pytest.raises(ValueError, match="unknown crash point"):
        crash_point("round-merge")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    federation = small_federation(tmp_path_factory.mktemp("uninterrupted"))
    federation.run()
    return snapshot(federation.keeper)


def _finish_and_compare(federation, accepted_before_restart, uninterrupted):
    keeper = restart(federation)
    assert accepted_before_restart <= accepted_updates(keeper)  # nothing acknowledged was lost
    federation.run()
    after = snapshot(keeper)
    assert keeper.finished
    assert after["params"] == uninterrupted["params"]  # the same state as if it never crashed
    assert [r.plan for r in after["rounds"]] == [r.plan for r in uninterrupted["rounds"]]  # the plan resumed
    assert accepted_updates(keeper) == {
        (r, d, t) for r, rows in uninterrupted["updates"].items() for d, t in ((u.device_id, u.tensors) for u in rows)
    }
    assert [r.status for r in after["rounds"]] == ["closed", "closed"]
    state = Path(federation.config.state_dir)
    lines = [json.loads(line) for line in (state / "metrics.jsonl").read_text().splitlines()]
    assert lines == [m for m in after["metrics"] if m["round"] >= 0]  # one line per round, none twice
    assert (state / "adapter" / "adapter_model.safetensors").exists()
    assert not list(state.rglob("*.writing"))


@pytest.mark.parametrize("crash", list(CRASHES))
def test_a_coordinator_crash_at_any_step_loses_nothing(crash, uninterrupted, tmp_path, monkeypatch):
    federation = small_federation(tmp_path)
    arm_crash(monkeypatch, crash)
    with pytest.raises(SimulatedCrash):
        federation.run()
    monkeypatch.delenv(CRASH_ENV)
    _finish_and_compare(federation, accepted_updates(federation.keeper), uninterrupted)


CRASHING_RUN = """
import sys
from tests.reliability.harness import small_federation
small_federation(__import__("pathlib").Path(sys.argv[1])).run()
"""


def test_a_real_process_exits_at_the_crash_point_and_a_restart_finishes_the_run(uninterrupted, tmp_path):
    env = {**os.environ, CRASH_ENV: "update-committed@1", "OMP_NUM_THREADS": "1"}
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
    federation = small_federation(tmp_path)  # the same folder: this is the restart
    assert federation.keeper.open_round is not None and federation.keeper.open_round.round == 0
    assert len(federation.keeper.open_round.answered) == 1  # the update committed just before the exit survived
    _finish_and_compare(federation, accepted_updates(federation.keeper), uninterrupted)


def test_a_round_driver_that_fails_stops_the_server_instead_of_serving_rounds_that_never_close(tmp_path):
    from dataclasses import replace

    from coordinator.server import CoordinatorServer

    federation = small_federation(tmp_path, devices=0)
    config = replace(federation.config, listen="127.0.0.1:0")

    def broken_tick():
        raise OSError("disk full")

    federation.keeper.tick = broken_tick
    server = CoordinatorServer(config, federation.keeper, service=federation.service).start()
    try:
        server.wait_finished(grace_s=0)  # returns: the server is stopping, not serving on
        assert isinstance(server.failure, OSError)
    finally:
        server.stop()
