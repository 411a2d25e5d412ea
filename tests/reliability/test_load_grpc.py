"""Load: one coordinator and many light agents over gRPC on loopback (tools/load_test.py). Fifty
in the default suite against an in-process server; a thousand, against the real coordinator
process, as a slow test. Latencies are reported by the tool, not asserted."""

import asyncio

import pytest

from coordinator.server import CoordinatorServer
from tests.federation import Federation, small_config
from tools.load_test import FleetOfStubs, LoadConfig, run

RPCS = {"Register", "GetTask", "FetchState", "SubmitUpdate"}


def test_fifty_agents_finish_a_round_over_grpc_with_every_update_merged(tmp_path):
    config = small_config(
        tmp_path,
        listen="127.0.0.1:0",
        rounds=1,
        local_steps=1,
        batch_size=1,
        min_devices=50,
        quorum=1.0,
        heartbeat_s=0.5,
        round_deadline_s=60,
        device_timeout_s=30,
    )
    federation = Federation(config, devices=0)
    server = CoordinatorServer(config, federation.keeper, service=federation.service).start()
    fleet = FleetOfStubs(f"127.0.0.1:{server.port}", 50)
    try:
        asyncio.run(fleet.run(timeout_s=120))
        merged = federation.keeper.ledger.metrics()[-1]
    finally:
        server.stop()
    assert federation.keeper.finished and fleet.accepted == 50 and not fleet.rejections
    assert merged["round"] == 0 and merged["updates"] == 50 and merged["slices_trained"] == merged["slices_total"]
    summary = fleet.latencies.summary()
    assert RPCS <= summary.keys() and all(not s["errors"] for s in summary.values())
    assert summary["Register"]["calls"] == summary["SubmitUpdate"]["calls"] == 50
    assert all(summary[name]["p99_ms"] >= summary[name]["p50_ms"] > 0 for name in RPCS)


@pytest.mark.slow
def test_a_thousand_agents_against_the_coordinator_process():
    result = run(LoadConfig(agents=1000, timeout_s=600, progress=False))
    assert result["rounds_closed"] == 1 and result["updates_accepted"] == result["updates_in_ledger"] == 1000
    assert result["devices_in_ledger"] == 1000 and not result["rejections"]
    assert all(result["rpc"][name]["calls"] >= 1000 for name in RPCS)
    assert result["rpc"]["Heartbeat"]["calls"] > 0
    # What the coordinator holds per device (ledger rows, last-seen, the open round's task, a connection).
    assert result["coordinator_bytes_per_device"] < 256 * 1024
