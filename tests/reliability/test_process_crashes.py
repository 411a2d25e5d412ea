"""The real `edgetune coordinator` process ended by os._exit at a crash point (EDGETUNE_CRASH_AT)
while three real agent processes train over gRPC; restarted on the same folder, it finishes every
round, the agents find it again by themselves and end cleanly, and nothing it had accepted is lost.
Slow (real processes, real training): the same crash points run in process in
test_coordinator_crashes.py."""

import json

import pytest

from coordinator.faults import CRASH_ENV, CRASH_EXIT_CODE
from tests.federation import SMALL_DATA
from tests.processes import edgetune, free_port, ledger_rows, loopback_agents, wait_for

ROUNDS = 3


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["round-merged@2", "checkpoint-renamed@2", "update-committed@4"])
def test_a_coordinator_process_crashed_at_a_crash_point_resumes_with_its_agents(tmp_path, crash):
    port, state = free_port(), tmp_path / "coordinator"
    arguments = [
        "coordinator",
        "--listen",
        f"127.0.0.1:{port}",
        "--state-dir",
        str(state),
        "--model",
        "tiny-bert",
        "--rounds",
        str(ROUNDS),
        "--local-steps",
        "5",
        "--batch-size",
        "8",
        "--max-length",
        "64",
        "--data",
        "partition",
        "--partitions",
        "3",
        "--dirichlet-alpha",
        "none",
        "--data-dir",
        SMALL_DATA,
        "--min-devices",
        "3",
        "--quorum",
        "1.0",
        "--round-deadline-s",
        "60",
        "--device-timeout-s",
        "30",
        "--heartbeat-s",
        "0.5",
        "--eval-examples",
        "16",
        "--train-probe-examples",
        "32",
    ]
    coordinator = edgetune(*arguments, log=tmp_path / "coordinator.log", env={CRASH_ENV: crash})
    agents = loopback_agents(port, 3, tmp_path, SMALL_DATA)
    try:
        assert wait_for(lambda: coordinator.poll() is not None, 240, "the crash", tmp_path)
        assert coordinator.returncode == CRASH_EXIT_CODE, (tmp_path / "coordinator.log").read_text()[-2000:]
        accepted = set(ledger_rows(state, "SELECT round, device_id, tensors FROM updates"))
        assert accepted
        coordinator = edgetune(*arguments, log=tmp_path / "coordinator-restarted.log")
        assert coordinator.wait(timeout=240) == 0, (tmp_path / "coordinator-restarted.log").read_text()[-2000:]
        for agent in agents:
            assert agent.wait(timeout=60) == 0
    finally:
        for process in (coordinator, *agents):
            if process.poll() is None:
                process.kill()
    assert accepted <= set(ledger_rows(state, "SELECT round, device_id, tensors FROM updates"))
    closed = [(r, "closed") for r in range(ROUNDS)]
    assert ledger_rows(state, "SELECT round, status FROM rounds ORDER BY round") == closed
    assert len(ledger_rows(state, "SELECT 1 FROM updates")) == 3 * ROUNDS  # every device's update of every round
    metrics = [json.loads(line) for line in (state / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == list(range(ROUNDS))
    assert (state / "adapter" / "adapter_model.safetensors").exists()
    for i in range(3):
        assert "unreachable" in (tmp_path / f"agent{i}.log").read_text()  # they met the outage and rode it out
