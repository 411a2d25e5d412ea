"""End to end over gRPC on loopback, in real processes: a coordinator and four agents run Spry
rounds; one agent is killed mid-round and the round still closes; the coordinator is killed with
SIGKILL while a round is open, restarted, and finishes with every update it had accepted."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.federation import SMALL_DATA

ROUNDS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _edgetune(*args, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "edge_runtime", *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env)


def _ledger(state: Path, sql: str) -> list[tuple]:
    try:
        db = sqlite3.connect(f"file:{state / 'ledger.sqlite'}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:  # not created yet
        return []


def _wait_for(condition, timeout: float, what: str, logs: Path):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def test_agents_and_coordinator_survive_kills_over_grpc(tmp_path):
    port, state = _free_port(), tmp_path / "coordinator"
    coordinator_args = ["coordinator", "--listen", f"127.0.0.1:{port}", "--state-dir", str(state),
                        "--model", "tiny-bert", "--rounds", str(ROUNDS), "--local-steps", "40", "--batch-size", "8",
                        "--max-length", "64", "--lr", "1e-2", "--data", "partition", "--partitions", "4",
                        "--dirichlet-alpha", "none", "--data-dir", SMALL_DATA, "--min-devices", "3",
                        "--round-deadline-s", "6", "--quorum", "0.5", "--device-timeout-s", "4",
                        "--heartbeat-s", "0.5", "--eval-examples", "16", "--train-probe-examples", "128"]
    coordinator = _edgetune(*coordinator_args, log=tmp_path / "coordinator.log")
    agents = [_edgetune("agent", "--coordinator", f"127.0.0.1:{port}", "--profile", "macbook-air-m2-16gb",
                        "--data", SMALL_DATA, "--state-dir", str(tmp_path / f"agent{i}"), "--threads", "1",
                        log=tmp_path / f"agent{i}.log") for i in range(4)]
    try:
        # Kill an agent that holds an unfinished task of round 1: the round closes without it.
        def victim():
            rows = _ledger(state, "SELECT device_id FROM assignments WHERE round = 1 AND status = 'assigned'")
            return rows[0][0] if rows else None

        doomed_id = _wait_for(victim, 120, "round 1 with an unfinished task", tmp_path)
        identities = [tmp_path / f"agent{i}" / "identity.json" for i in range(4)]
        doomed = next(i for i, path in enumerate(identities) if path.exists() and doomed_id in path.read_text())
        agents[doomed].send_signal(signal.SIGKILL)
        _wait_for(lambda: _ledger(state, "SELECT 1 FROM rounds WHERE round = 1 AND status = 'closed'"), 60,
                  "round 1 to close without the killed agent", tmp_path)
        # SIGKILL the coordinator once round 2 has accepted an update, then restart it.
        _wait_for(lambda: _ledger(state, "SELECT 1 FROM updates WHERE round = 2"), 60, "an update in round 2", tmp_path)
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait()
        accepted = set(_ledger(state, "SELECT round, device_id FROM updates"))
        coordinator = _edgetune(*coordinator_args, log=tmp_path / "coordinator-restarted.log")
        assert coordinator.wait(timeout=150) == 0, (tmp_path / "coordinator-restarted.log").read_text()[-3000:]
    finally:
        for process in (coordinator, *agents):
            if process.poll() is None:
                process.kill()
    after = set(_ledger(state, "SELECT round, device_id FROM updates"))
    assert accepted <= after  # nothing the coordinator acknowledged was lost
    rounds = _ledger(state, "SELECT round, status FROM rounds ORDER BY round")
    assert rounds == [(r, "closed") for r in range(ROUNDS)]
    restarted_log = (tmp_path / "coordinator-restarted.log").read_text()
    assert "recovered at state version 2" in restarted_log and "round 2 open" in restarted_log
    import json

    metrics = [json.loads(m) for (m,) in _ledger(state, "SELECT record FROM metrics ORDER BY round")]
    # Round 1 closed without the killed agent, whose slices kept their values.
    assert metrics[2]["round"] == 1 and metrics[2]["updates"] == metrics[2]["assigned"] - 1
    # (Every slice has one holder here, 5 slices for at most 4 devices; round 0 may itself miss a slow
    # agent's slices on a busy machine, so it is no reference.)
    assert metrics[2]["slices_trained"] < metrics[2]["slices_total"]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert (state / "adapter" / "adapter_model.safetensors").exists()
    for i in range(4):
        if i != doomed:
            assert agents[i].wait(timeout=30) == 0


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


def test_with_a_certificate_the_coordinator_speaks_tls_only(tmp_path):
    import grpc

    from coordinator.server import CoordinatorServer
    from edge_runtime.agent.client import GrpcClient
    from edge_runtime.protocol import PROTOCOL_VERSION, pb, rpc
    from edge_runtime.random_directions import FINGERPRINT
    from tests.federation import LAPTOP, Federation, small_config

    key, cert = _self_signed(tmp_path)
    config = small_config(tmp_path, listen="127.0.0.1:0", tls_cert=str(cert), tls_key=str(key))
    federation = Federation(config, devices=0)
    server = CoordinatorServer(config, federation.keeper, service=federation.service, drive=False).start()
    address = f"127.0.0.1:{server.port}"
    request = pb.RegisterRequest(protocol_version=PROTOCOL_VERSION, profile=LAPTOP, direction_fingerprint=FINGERPRINT)
    try:
        client = GrpcClient(address, root_cert=cert.read_bytes())
        assert client.register(request).device_id
        client.close()
        plaintext = grpc.insecure_channel(address)
        try:
            rpc.CoordinatorStub(plaintext).Register(request, timeout=5)
            raise AssertionError("a plaintext client was served")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            plaintext.close()
    finally:
        server.stop()
