"""Durability of the coordinator's state on disk: a checkpoint is staged beside its final name and
renamed, so a crash mid-write leaves the previous one whole; a torn or damaged checkpoint (what a
crash on a disk that lost unsynced data leaves) is detected by its hash, the one before it is used
and the rounds after it are merged again from the ledger, which commits in WAL mode with full sync."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from coordinator.faults import CRASH_ENV
from tests.reliability.harness import SimulatedCrash, arm_crash, restart, small_federation, snapshot


def _checkpoints(federation) -> Path:
    return Path(federation.config.state_dir) / "checkpoints"


def test_a_crash_while_a_checkpoint_is_written_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    federation = small_federation(tmp_path)
    arm_crash(monkeypatch, "checkpoint-staged@1")  # round 0's checkpoint, staged but not renamed
    with pytest.raises(SimulatedCrash):
        federation.run()
    monkeypatch.delenv(CRASH_ENV)
    folder = _checkpoints(federation)
    assert (folder / "state-000001.safetensors.writing").exists() and not (folder / "state-000001.safetensors").exists()
    [(version, _, file, sha256)] = federation.keeper.ledger.checkpoints()
    assert version == 0 and hashlib.sha256((folder / file).read_bytes()).hexdigest() == sha256
    keeper = restart(federation)
    assert keeper.version == 0 and keeper.open_round is not None  # the round is merged again on the next tick


@pytest.mark.parametrize("damage", ["torn", "missing", "flipped"])
def test_a_damaged_checkpoint_is_detected_and_the_previous_one_used(tmp_path, damage):
    federation = small_federation(tmp_path)
    federation.run()
    final = snapshot(federation.keeper)
    latest = _checkpoints(federation) / federation.keeper.ledger.checkpoints()[0][2]
    data = latest.read_bytes()
    if damage == "torn":
        latest.write_bytes(data[: len(data) // 2])
    elif damage == "missing":
        latest.unlink()
    else:  # one bit of one weight: still a well-formed file, so only the hash can tell
        latest.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    logged = []
    federation.keeper.close()
    from coordinator.rounds import RoundKeeper

    recovered = RoundKeeper(federation.config, federation.host, log=logged.append)
    assert any("falling back to the previous checkpoint" in line for line in logged)
    assert recovered.version == final["version"] and recovered.finished
    for name, value in recovered.params.items():
        np.testing.assert_array_equal(value, np.frombuffer(final["params"][name], np.float32).reshape(value.shape))
    # The version was written again, whole: the next restart reads it without falling back.
    recovered.close()
    logged.clear()
    RoundKeeper(federation.config, federation.host, log=logged.append).close()
    assert not any("falling back" in line for line in logged)


def test_the_ledger_commits_through_a_write_ahead_log_with_full_sync(tmp_path):
    ledger = small_federation(tmp_path, devices=0).keeper.ledger
    assert ledger.journal() == ("wal", 2)  # FULL sync: a commit that returned is on the disk
