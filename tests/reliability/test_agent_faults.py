"""Devices lost at every phase of a round (after taking the task, mid-training, mid-upload), a
device that delivers after the deadline, a stream cut mid-upload over gRPC, and an agent that
finds its coordinator again after a restart. The round closes on time without the lost devices,
nothing partial or late is merged, and the late device's update lands in no round."""

import threading
import time

import grpc

from coordinator.rounds import RoundKeeper
from coordinator.service import CoordinatorService
from edge_runtime.agent.agent import Agent, DataSource
from edge_runtime.agent.client import GrpcClient
from edge_runtime.local.work import update_header
from edge_runtime.protocol import pb, rpc
from edge_runtime.protocol.tensors import to_chunks
from tests.federation import LAPTOP, SMALL_DATA
from tests.reliability.harness import ManualClock, accepted_updates, serve, small_federation, snapshot

DEADLINE_S = 60.0


def _chunks(header: pb.UpdateHeader, deltas, chunk_bytes: int = 16) -> list[pb.UpdateChunk]:
    """An update cut into many small chunks, so a stream can break between two of them."""
    tensors = to_chunks(deltas, chunk_bytes=chunk_bytes)
    return [pb.UpdateChunk(header=header)] + [pb.UpdateChunk(tensor=c) for c in tensors]


def _untouched(before: dict, after: dict, tensors) -> bool:
    return all(before["params"][name] == after["params"][name] for name in tensors)


def test_devices_lost_after_the_task_mid_training_and_mid_upload_leave_the_round_to_the_rest(tmp_path):
    clock = ManualClock()
    federation = small_federation(
        tmp_path, devices=4, clock=clock, quorum=0.5, round_deadline_s=DEADLINE_S, device_timeout_s=10 * DEADLINE_S
    )
    keeper, service = federation.keeper, federation.service
    took_task, mid_training, mid_upload, healthy = federation.agents
    keeper.tick()
    before = snapshot(keeper)
    took_task.client.get_task()  # and is never heard from again
    mid_training._prepare(mid_training.client.get_task().task)  # fetched the state, dies while training
    cut = mid_upload.prepare()
    chunks = _chunks(update_header(cut.task, cut.result), cut.result.deltas)
    assert len(chunks) > 4

    def broken_stream():  # the link dies after half the update
        yield from chunks[: len(chunks) // 2]
        raise ConnectionResetError("link lost mid-upload")

    try:
        service.submit_update(mid_upload.client.metadata(), broken_stream())
        raise AssertionError("a broken upload was answered")
    except ConnectionResetError:
        pass
    assert accepted_updates(keeper) == set()  # nothing of the half update is stored
    assert healthy.work_once()[0] == "trained"
    keeper.tick()
    assert keeper.open_round is not None  # 1 of 4 is below the quorum of 2: the round waits
    clock.advance(DEADLINE_S + 1)
    keeper.tick()
    assert keeper.open_round is not None  # past the deadline without a quorum it waits one more deadline
    assert mid_upload.deliver(cut) == "trained"  # the cut device uploads again, whole this time
    keeper.tick()
    after = snapshot(keeper)
    assert keeper.version == 1 and {u.device_id for u in after["updates"][0]} == {
        mid_upload.client.device_id,
        healthy.client.device_id,
    }
    tasks = {device: pb.Task.FromString(blob) for device, (blob, _) in before["assignments"][0].items()}
    lost_tensors = [name for agent in (took_task, mid_training) for name in tasks[agent.client.device_id].tensors]
    assert lost_tensors and _untouched(before, after, lost_tensors)  # lost devices' slices kept their values
    assert not _untouched(before, after, keeper.params)


def test_a_slow_device_past_the_deadline_is_merged_into_no_round(tmp_path):
    clock = ManualClock()
    federation = small_federation(
        tmp_path, devices=3, clock=clock, quorum=0.5, round_deadline_s=DEADLINE_S, device_timeout_s=10 * DEADLINE_S
    )
    keeper = federation.keeper
    slow, *others = federation.agents
    keeper.tick()
    late = slow.prepare()  # trains round 0 but delivers only after the deadline
    for agent in others:
        assert agent.work_once()[0] == "trained"
    clock.advance(DEADLINE_S + 1)
    keeper.tick()
    assert keeper.version == 1 and keeper.open_round is not None and keeper.open_round.round == 1
    before = snapshot(keeper)
    assert slow.deliver(late) == "rejected"
    relabelled = update_header(late.task, late.result)
    relabelled.round = 1  # claiming the open round does not smuggle it in either
    answer = slow.client.submit(relabelled, late.result.deltas)
    assert not answer.accepted and "task" in answer.reason
    assert snapshot(keeper) == before
    reasons = [reason for _, device, reason in keeper.ledger.rejections() if device == slow.client.device_id]
    assert len(reasons) == 2 and "not open" in reasons[0]
    assert slow.work_once()[0] == "trained"  # the slow device takes part in round 1 as usual


def test_an_upload_cancelled_mid_stream_over_grpc_stores_nothing_and_can_be_sent_again(tmp_path):
    federation = small_federation(tmp_path, devices=1)
    agent = federation.agents[0]
    federation.keeper.tick()
    prepared = agent.prepare()
    chunks = _chunks(update_header(prepared.task, prepared.result), prepared.result.deltas)
    server = serve(federation)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    halfway, release = threading.Event(), threading.Event()

    def stalled_stream():
        yield from chunks[: len(chunks) // 2]
        halfway.set()
        release.wait(10)  # the device dies here: its call is cancelled

    try:
        call = rpc.CoordinatorStub(channel).SubmitUpdate.future(
            stalled_stream(), metadata=tuple(agent.client.metadata().items())
        )
        assert halfway.wait(10)
        time.sleep(0.2)  # let the coordinator take the chunks in
        call.cancel()
        release.set()
        assert call.cancelled()
        time.sleep(0.2)
        assert accepted_updates(federation.keeper) == set()
        client = GrpcClient(f"127.0.0.1:{server.port}", log=lambda _: None)
        client.device_id, client.token = agent.client.device_id, agent.client.token
        assert client.submit(update_header(prepared.task, prepared.result), prepared.result.deltas).accepted
        client.close()
        assert {u.device_id for u in federation.keeper.ledger.updates(0)} == {agent.client.device_id}
    finally:
        release.set()
        channel.close()
        server.stop()


def test_an_agent_reconnects_by_itself_when_its_coordinator_comes_back(tmp_path):
    federation = small_federation(tmp_path, devices=0, rounds=1)
    server = serve(federation)
    port = server.port
    logged: list[str] = []
    client = GrpcClient(f"127.0.0.1:{port}", log=logged.append)
    agent = Agent(client, LAPTOP, DataSource(SMALL_DATA), federation.backend_for, log=lambda _: None)
    device_id = agent.join()
    server.stop()  # the coordinator goes away (its ledger closed, as a crash leaves it)
    beat = {}
    waiting = threading.Thread(target=lambda: beat.setdefault("reply", client.heartbeat()))
    waiting.start()
    time.sleep(1.0)  # the agent meets a dead port and backs off
    assert waiting.is_alive()
    keeper = RoundKeeper(federation.config, federation.host, clock=ManualClock(), log=lambda _: None)
    federation.keeper, federation.service = keeper, CoordinatorService(keeper)
    server = serve(federation, port)
    try:
        waiting.join(30)
        assert "reply" in beat, logged
        assert any("unreachable" in line for line in logged) and any("is back" in line for line in logged)
        keeper.tick()
        assert agent.work_once()[0] == "trained"  # same id and token: no second registration
        assert [d.id for d in keeper.ledger.devices()] == [device_id]
        assert len(keeper.ledger.updates(0)) == 1
    finally:
        client.close()
        server.stop()
