"""Security defaults, checked by behaviour: a coordinator reachable from other machines refuses to
start without a join secret; tokens are checked with a constant-time comparison; and nothing a
device sends is ever unpickled or evaluated, along the whole path from the wire through the
ledger, a restart and the merge (TLS-only serving is tested in test_federation_grpc.py)."""

import hmac
import pickle

import pytest

from coordinator import auth
from coordinator.config import CoordinatorConfig
from edge_runtime.cli import main
from edge_runtime.errors import UserError
from edge_runtime.protocol import pb
from tests.reliability.harness import restart, small_federation
from tests.reliability.hostile import ValidUpdate

# A pickle (protocol 0, so it is also a valid string) that writes a file when loaded, and an
# expression that writes another when evaluated: live traps, short enough for every bounded field.
PICKLE_TRAP = b"c__builtin__\nopen\n(S'unpickled'\nS'w'\ntR."
EVAL_TRAP = "open('evaluated','w')"


@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051"])
def test_a_coordinator_reachable_from_other_machines_needs_a_join_secret(listen):
    with pytest.raises(UserError, match="join_secret"):
        CoordinatorConfig(listen=listen).validate()
    CoordinatorConfig(listen=listen, join_secret="s3cret").validate()
    CoordinatorConfig(listen="127.0.0.1:50051").validate()  # the local demo runs without


def test_the_command_refuses_to_serve_the_network_without_a_secret_in_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["coordinator", "--listen", "0.0.0.0:0"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "join_secret" in err


def test_tokens_are_compared_in_constant_time(monkeypatch):
    compared, constant_time = [], hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    device_id, token = auth.new_identity()
    stored = auth.token_hash(token)
    assert auth.token_matches(token, stored) and not auth.token_matches(token[:-1] + "x", stored)
    assert auth.secret_matches("s3cret", "s3cret") and not auth.secret_matches("s3cre", "s3cret")
    assert len(compared) == 4


def test_nothing_a_device_sends_is_unpickled_or_evaluated(tmp_path, monkeypatch):
    live = tmp_path / "live"
    live.mkdir()
    monkeypatch.chdir(live)
    pickle.loads(PICKLE_TRAP)
    exec(EVAL_TRAP)
    assert {p.name for p in live.iterdir()} == {"unpickled", "evaluated"}  # the traps do go off

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    traps = [PICKLE_TRAP.decode(), EVAL_TRAP]
    profile = pb.DeviceProfile(
        name=traps[0],
        device_class=traps[1],
        memory_cap_bytes=8 * 10**9,
        gflops_fp32=200,
        backends=[*traps, "torch"],
        precisions=["fp32"],
    )
    federation = small_federation(tmp_path / "coordinator", devices=1, profile=profile, rounds=1)
    keeper, service = federation.keeper, federation.service
    client = federation.agents[0].client
    keeper.tick()
    update = ValidUpdate(keeper.assigned_task(client.device_id), dict(keeper.shapes), "")
    smuggled = update.chunks()
    smuggled[1].tensor.data = PICKLE_TRAP.ljust(len(smuggled[1].tensor.data), b".")[: len(smuggled[1].tensor.data)]
    assert not service.submit_update(client.metadata(), iter(smuggled)).accepted  # pickle bytes read as floats
    service.report_metrics(client.metadata(), pb.MetricsReport(round=0, values={t: 1.0 for t in traps}))
    assert service.submit_update(client.metadata(), iter(update.chunks())).accepted
    keeper = restart(federation)  # everything stored (the trapped profile too) is read back and merged
    keeper.tick()
    assert keeper.finished
    assert not any(p.name in ("unpickled", "evaluated") for p in tmp_path.rglob("*") if live not in p.parents)
