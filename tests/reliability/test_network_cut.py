"""The network between agents and a real gRPC coordinator breaks (tests/reliability/proxy.py): cut
mid-upload and after the coordinator stored an update but before its answer arrived, slowed past a
round's deadline, and silent for longer than the device timeout. The coordinator's clock is the
test's, so rounds close when the test says; the link's faults and the agents' retries are real.
Every update is merged once or not at all, and the agents' view agrees with the ledger."""

import random
import threading
import time
from dataclasses import replace

import pytest

from coordinator.server import CoordinatorServer
from edge_runtime.agent.agent import Agent, DataSource
from edge_runtime.agent.client import GrpcClient
from edge_runtime.local.torch_model import TorchModel
from edge_runtime.protocol.specs import adapter_of
from edge_runtime.spec import AdapterSpec
from tests.federation import LAPTOP, SMALL_DATA
from tests.reliability.harness import ManualClock, accepted_updates, serve, small_federation, snapshot
from tests.reliability.proxy import LinkProxy

DEADLINE_S = 60.0
DEVICE_TIMEOUT_S = 120.0


class Link:
    """An agent that reaches the coordinator only through its own proxy."""

    def __init__(self, server_port: int, backend_for) -> None:
        self.proxy = LinkProxy(server_port, chunk_bytes=512)
        self.logged: list[str] = []
        self.client = GrpcClient(self.proxy.address, log=self.logged.append, timeout_s=1.0)
        self.agent = Agent(self.client, LAPTOP, DataSource(SMALL_DATA), backend_for, log=self.logged.append)
        self.agent.join()

    def in_background(self, work):
        """Runs work(agent) in a thread; the returned function joins it and gives its result."""
        outcome = {}
        thread = threading.Thread(target=lambda: outcome.setdefault("value", work(self.agent)), daemon=True)
        thread.start()

        def result(timeout: float = 30.0):
            thread.join(timeout)
            assert "value" in outcome, self.logged
            return outcome["value"]

        return result

    def close(self) -> None:
        self.client.close()
        self.proxy.close()


@pytest.fixture
def network(tmp_path):
    """A coordinator on a manual clock behind gRPC, and a function that adds agents behind proxies."""
    clock = ManualClock()
    federation = small_federation(
        tmp_path,
        devices=0,
        clock=clock,
        rounds=3,
        quorum=0.5,
        round_deadline_s=DEADLINE_S,
        device_timeout_s=DEVICE_TIMEOUT_S,
    )
    server = serve(federation)
    links: list[Link] = []

    def link() -> Link:
        links.append(Link(server.port, federation.backend_for))
        return links[-1]

    yield federation, clock, link
    for each in links:
        each.close()
    server.stop()


def _wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _ids(link: Link) -> str:
    return link.client.device_id


def test_a_link_cut_mid_upload_is_retried_and_the_update_merged_once(network):
    federation, _, link = network
    keeper = federation.keeper
    cut, other = link(), link()
    keeper.tick()
    prepared = cut.agent.prepare()
    cut.proxy.delay_up_s = 0.05  # the upload spans several 512-byte chunks: slow enough to cut inside it
    sent_before = cut.proxy.bytes_up
    delivered = cut.in_background(lambda agent: agent.deliver(prepared))
    _wait_until(lambda: cut.proxy.bytes_up > sent_before)
    cut.proxy.cut()
    cut.proxy.delay_up_s = 0.0
    assert accepted_updates(keeper) == set()  # half an update is nothing
    assert delivered() == "trained"  # retried over a new connection, after a backoff
    assert any("unreachable" in line for line in cut.logged) and any("is back" in line for line in cut.logged)
    assert other.agent.work_once()[0] == "trained"
    assert keeper.version == 1  # everyone answered: round 0 closed
    assert sorted(d for _, d, _ in accepted_updates(keeper)) == sorted([_ids(cut), _ids(other)])
    assert keeper.ledger.metrics()[-1]["updates"] == 2
    assert keeper.ledger.update(0, _ids(cut)).wire_bytes > 4 * 512  # so the cut did land inside it


def test_an_answer_lost_after_the_update_was_merged_is_acknowledged_on_retry_and_changes_nothing(network):
    federation, _, link = network
    keeper = federation.keeper
    cut, other = link(), link()
    keeper.tick()
    prepared = cut.agent.prepare()
    assert other.agent.work_once()[0] == "trained"
    cut.proxy.delay_down_s = 2.0  # the coordinator's answer is held in the link ...
    delivered = cut.in_background(lambda agent: agent.deliver(prepared))
    _wait_until(lambda: keeper.open_round is not None and keeper.open_round.round == 1)  # stored, and round 0 merged
    merged = snapshot(keeper)
    cut.proxy.cut()  # ... and the link dies with it: the agent cannot know that its update arrived
    cut.proxy.delay_down_s = 0.0
    assert delivered() == "trained" and cut.agent.rounds_done == 1  # its resend to the closed round is acknowledged
    assert any("unreachable" in line for line in cut.logged)
    assert snapshot(keeper) == merged  # and changes nothing: stored once, merged once, kept out of round 1
    assert not [r for r in keeper.ledger.rejections() if r[1] == _ids(cut)]
    assert keeper.ledger.metrics()[-1]["updates"] == 2


def test_an_update_slowed_past_the_deadline_is_refused_by_its_closed_round_and_kept_out_of_the_next(network):
    federation, clock, link = network
    keeper = federation.keeper
    slow, other = link(), link()
    keeper.tick()
    prepared = slow.agent.prepare()
    assert other.agent.work_once()[0] == "trained"
    slow.proxy.delay_up_s = slow.proxy.delay_down_s = 0.1  # every chunk, both ways
    sent_before = slow.proxy.bytes_up
    delivered = slow.in_background(lambda agent: agent.deliver(prepared))
    _wait_until(lambda: slow.proxy.bytes_up > sent_before)  # the upload is on its way ...
    clock.advance(DEADLINE_S + 1)
    keeper.tick()  # ... when the deadline closes round 0 with the quorum it has
    assert keeper.version == 1 and keeper.open_round.round == 1
    closed = snapshot(keeper)
    assert delivered() == "rejected"
    assert snapshot(keeper) == closed  # round 1 took nothing from round 0's late update
    reasons = [reason for _, device, reason in keeper.ledger.rejections() if device == _ids(slow)]
    assert len(reasons) == 1 and "round 0 is not open" in reasons[0]
    assert {d for _, d, _ in accepted_updates(keeper)} == {_ids(other)}
    slow.proxy.delay_up_s = slow.proxy.delay_down_s = 0.0
    assert slow.agent.work_once()[0] == "trained"  # and it takes part in round 1 as usual
    assert (1, _ids(slow)) in {(r, d) for r, d, _ in accepted_updates(keeper)}


def test_a_device_silent_past_the_device_timeout_sits_rounds_out_and_rejoins_when_its_link_returns(network):
    federation, clock, link = network
    keeper = federation.keeper
    silent, other = link(), link()
    keeper.tick()
    assert set(keeper.open_round.devices) == {_ids(silent), _ids(other)}
    assert other.agent.work_once()[0] == "trained"
    silent.proxy.blackhole(3.0)  # longer than several of its 1 s call deadlines
    asked = silent.in_background(lambda agent: agent.work_once())
    clock.advance(DEVICE_TIMEOUT_S + 1)  # the coordinator has not heard from it for a device timeout
    other.client.heartbeat()  # while the other device kept in touch
    keeper.tick()
    assert keeper.version == 1 and set(keeper.open_round.devices) == {_ids(other)}  # planned without it
    assert asked()[0] == "wait"  # the link came back: it asked again and was seen
    assert any("DEADLINE_EXCEEDED" in line for line in silent.logged)
    assert other.agent.work_once()[0] == "trained"  # round 1 closes; round 2 is planned with both again
    assert set(keeper.open_round.devices) == {_ids(silent), _ids(other)}
    assert silent.agent.work_once()[0] == "trained" and other.agent.work_once()[0] == "trained"
    assert keeper.finished
    by_round = [{u.device_id for u in keeper.ledger.updates(r)} for r in range(3)]
    assert by_round == [{_ids(other)}, {_ids(other)}, {_ids(silent), _ids(other)}]


def _own_model():
    """A model per agent: agents that train at the same time in threads must not share one."""
    models: dict[AdapterSpec, TorchModel] = {}

    def backend_for(task):
        spec = adapter_of(task)
        if spec not in models:
            models[spec] = TorchModel(spec)
        return models[spec]

    return backend_for


@pytest.mark.slow
def test_links_cut_again_and_again_while_agents_run_lose_no_update_and_merge_none_twice(tmp_path):
    """Real time throughout: the coordinator's own driver closes rounds, three agents run their
    loops in threads over slow links, and a link is cut every 0.1-0.4 s until all rounds are merged."""
    # zo-sgd, not the planner's forward-grad: torch's forward-AD level is process-wide, so jvp in two
    # threads at once breaks (the estimator then falls back to finite differences with a warning).
    federation = small_federation(
        tmp_path,
        devices=0,
        clock=time.time,
        rounds=3,
        round_deadline_s=60,
        device_timeout_s=60,
        heartbeat_s=1.0,
        min_devices=3,
        method="zo-sgd",
    )
    server = CoordinatorServer(
        replace(federation.config, listen="127.0.0.1:0"), federation.keeper, service=federation.service
    ).start()
    links = [Link(server.port, _own_model()) for _ in range(3)]
    for link in links:  # calls that last, so that cuts land inside them rather than between them
        link.proxy.delay_up_s = link.proxy.delay_down_s = 0.01
    stop = threading.Event()
    runs = [threading.Thread(target=link.agent.run, args=(stop,), daemon=True) for link in links]
    try:
        for run in runs:
            run.start()
        chaos = random.Random(0)
        deadline = time.monotonic() + 240
        while not federation.keeper.finished and time.monotonic() < deadline:
            time.sleep(chaos.uniform(0.1, 0.4))
            chaos.choice(links).proxy.cut()
        assert federation.keeper.finished, [link.logged[-5:] for link in links]
        for run in runs:
            run.join(30)
        keeper = federation.keeper
        per_round = [{u.device_id for u in keeper.ledger.updates(r)} for r in range(3)]
        merged = [m["updates"] for m in keeper.ledger.metrics() if m["round"] >= 0]
    finally:
        stop.set()
        for link in links:
            link.close()
        server.stop()
    assert sum(link.proxy.cuts for link in links) >= 5
    assert any("unreachable" in line for link in links for line in link.logged)
    assert merged == [len(ids) for ids in per_round] and all(per_round)
    for link in links:  # what each agent believes it contributed is what the ledger merged
        assert link.agent.rounds_done == sum(_ids(link) in ids for ids in per_round), link.logged
