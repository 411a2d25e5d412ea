"""Fuzzing every call of the coordinator with hostile input: forged identities, broken
registrations, malformed, truncated, reordered, mislabelled, NaN/Inf, huge-norm, wrong-shape and
wrong-slice updates, replays, bad metrics and state requests. Every one is refused with a clear
status (or, for a well-formed update the coordinator declines, `accepted=false` and a reason), the
coordinator's durable state and merged parameters are unchanged, and it goes on serving.

In process, through the same CoordinatorService the gRPC server wraps; test_hostile_wire.py sends
bytes over a real socket."""

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.protocol import PROTOCOL_VERSION, CallFailed, pb
from edge_runtime.seeded.draws import FINGERPRINT
from tests.federation import LAPTOP
from tests.reliability.harness import small_federation, snapshot
from tests.reliability.hostile import (
    UPDATE_ATTACKS,
    ValidUpdate,
    forged_metadata,
    hostile_registrations,
    hostile_updates,
)

SECRET = "s3cret"
CLEAR_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class Coordinator:
    """A coordinator with one round open for two devices: `attacker` holds a task, `honest` too."""

    def __init__(self, folder) -> None:
        self.federation = small_federation(folder, devices=2)
        self.keeper, self.service = self.federation.keeper, self.federation.service
        self.federation.config.join_secret = SECRET  # the harness's agents joined before; anyone else needs it
        self.keeper.tick()
        self.attacker, self.honest = (agent.client for agent in self.federation.agents)
        foreign = self.keeper.assigned_task(self.honest.device_id).tensors[0]
        self.update = ValidUpdate(self.keeper.assigned_task(self.attacker.device_id), dict(self.keeper.shapes), foreign)
        self.registration = pb.RegisterRequest(
            protocol_version=PROTOCOL_VERSION,
            join_secret=SECRET,
            profile=LAPTOP,
            examples=10,
            direction_fingerprint=FINGERPRINT,
        )

    def refuses(self, call) -> None:
        """`call` must be refused and change nothing; the coordinator must still serve."""
        before = snapshot(self.keeper)
        try:
            answer = call()
        except CallFailed as failure:
            assert failure.code in CLEAR_REFUSALS and failure.message, (failure.code, failure.message)
        else:
            if isinstance(answer, pb.SubmitReply):
                assert not answer.accepted and answer.reason
            else:
                raise AssertionError(f"served: {answer}")
        assert snapshot(self.keeper) == before
        assert self.service.heartbeat(self.honest.metadata()).round == 0


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory) -> Coordinator:
    return Coordinator(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("attack", UPDATE_ATTACKS, ids=lambda attack: attack.__name__.strip("_"))
@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_hostile_updates_are_refused_and_change_nothing(coordinator, attack, data):
    chunks = data.draw(hostile_updates(coordinator.update, attack))
    coordinator.refuses(lambda: coordinator.service.submit_update(coordinator.attacker.metadata(), iter(chunks)))


@FUZZ
@given(data=st.data())
def test_forged_identities_are_refused_on_every_call(coordinator, data):
    metadata = data.draw(forged_metadata(coordinator.attacker.metadata()))
    service, update = coordinator.service, coordinator.update
    call = data.draw(
        st.sampled_from(
            [
                lambda: service.heartbeat(metadata),
                lambda: service.get_task(metadata),
                lambda: list(service.fetch_state(metadata, pb.FetchStateRequest())),
                lambda: service.report_metrics(metadata, pb.MetricsReport(round=0, values={"loss": 0.5})),
                lambda: service.submit_update(metadata, iter(update.chunks())),
            ]
        )
    )
    coordinator.refuses(call)


@FUZZ
@given(data=st.data())
def test_hostile_registrations_are_refused(coordinator, data):
    known = (coordinator.attacker.device_id, coordinator.attacker.token)
    request = data.draw(hostile_registrations(coordinator.registration, known))
    coordinator.refuses(lambda: coordinator.service.register(request))


@FUZZ
@given(raw=st.binary(max_size=300))
def test_registrations_parsed_from_random_bytes_are_refused(coordinator, raw):
    try:
        request = pb.RegisterRequest.FromString(raw)
    except Exception:  # bytes that do not parse never reach the service (see test_hostile_wire)
        return
    coordinator.refuses(lambda: coordinator.service.register(request))


metric_names = st.text(max_size=100)


@FUZZ
@given(
    values=st.one_of(
        st.dictionaries(metric_names, st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=8).filter(
            lambda v: any(len(k) > 64 or v[k] != v[k] or abs(v[k]) == float("inf") for k in v)
        ),
        st.dictionaries(st.text(min_size=1, max_size=8), st.floats(0, 1), min_size=65, max_size=80),
    )
)
def test_unbounded_or_non_finite_metrics_are_refused(coordinator, values):
    report = pb.MetricsReport(round=0, values=values)
    coordinator.refuses(lambda: coordinator.service.report_metrics(coordinator.attacker.metadata(), report))


@FUZZ
@given(names=st.lists(st.text(max_size=60), min_size=1, max_size=5))
def test_state_requests_for_unknown_tensors_are_refused(coordinator, names):
    if all(name in coordinator.keeper.params for name in names):
        return
    request = pb.FetchStateRequest(tensors=names)
    coordinator.refuses(lambda: list(coordinator.service.fetch_state(coordinator.attacker.metadata(), request)))


def test_a_valid_update_is_accepted_once_and_its_replays_change_nothing(tmp_path):
    """The builders' starting point is valid (so the fuzzing above refuses for the attack, not by
    accident), and a replayed update, by its device or by another, is never merged twice."""
    coordinator = Coordinator(tmp_path)
    keeper = coordinator.keeper
    honest = ValidUpdate(
        keeper.assigned_task(coordinator.honest.device_id), dict(keeper.shapes), coordinator.update.foreign
    )
    assert coordinator.service.submit_update(coordinator.honest.metadata(), iter(honest.chunks())).accepted
    for _ in range(3):  # its own device's resends, as after a lost answer, are acknowledged and change nothing
        before = snapshot(coordinator.keeper)
        assert coordinator.service.submit_update(coordinator.honest.metadata(), iter(honest.chunks())).accepted
        assert snapshot(coordinator.keeper) == before
    coordinator.refuses(
        lambda: coordinator.service.submit_update(coordinator.attacker.metadata(), iter(honest.chunks()))
    )
    assert coordinator.service.submit_update(
        coordinator.attacker.metadata(), iter(coordinator.update.chunks())
    ).accepted
    coordinator.keeper.tick()
    assert coordinator.keeper.version == 1 and len(coordinator.keeper.ledger.updates(0)) == 2
    assert coordinator.service.register(coordinator.registration).device_id  # the valid registration is served
