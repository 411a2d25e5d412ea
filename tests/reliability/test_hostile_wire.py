"""Hostile bytes over a real gRPC socket: random, truncated, type-confused and oversized messages to
every method. Each ends in a clear status (never UNKNOWN or INTERNAL, which would read as a
coordinator bug), the coordinator's state is unchanged and it goes on serving."""

from dataclasses import replace

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.server import CoordinatorServer
from edge_runtime.protocol import PROTOCOL_VERSION, pb
from edge_runtime.seeded.draws import FINGERPRINT
from tests.federation import LAPTOP
from tests.reliability.harness import small_federation, snapshot

METHODS = {  # name: (request streaming, response streaming)
    "Register": (False, False),
    "Heartbeat": (False, False),
    "GetTask": (False, False),
    "FetchState": (False, True),
    "SubmitUpdate": (True, False),
    "ReportMetrics": (False, False),
}
CLEAR = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class Wire:
    def __init__(self, folder) -> None:
        self.federation = small_federation(folder, devices=2)
        self.keeper = self.federation.keeper
        self.keeper.tick()
        config = replace(self.federation.config, listen="127.0.0.1:0")
        self.server = CoordinatorServer(config, self.keeper, service=self.federation.service, drive=False).start()
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.server.port}", options=[("grpc.max_send_message_length", 64 * 2**20)]
        )
        self.metadata = tuple(self.federation.agents[0].client.metadata().items())

    def send(self, method: str, payloads: list[bytes]):
        """Raw bytes, no serializer: what a client that does not speak protobuf would send."""
        streaming_in, streaming_out = METHODS[method]
        path = f"/edgetune.v1.Coordinator/{method}"
        if streaming_in:
            return self.channel.stream_unary(path)(iter(payloads), metadata=self.metadata, timeout=10)
        if streaming_out:
            return list(self.channel.unary_stream(path)(payloads[0], metadata=self.metadata, timeout=10))
        return self.channel.unary_unary(path)(payloads[0], metadata=self.metadata, timeout=10)

    def refuses(self, method: str, payloads: list[bytes]) -> grpc.StatusCode | None:
        before = snapshot(self.keeper)
        code = None
        try:
            self.send(method, payloads)
        except grpc.RpcError as error:
            code = error.code()
            assert code in CLEAR, (method, code, error.details())
        assert snapshot(self.keeper) == before
        heartbeat = self.channel.unary_unary(
            "/edgetune.v1.Coordinator/Heartbeat", response_deserializer=pb.HeartbeatReply.FromString
        )
        assert heartbeat(b"", metadata=self.metadata, timeout=10).round == 0  # still serving
        return code

    def close(self) -> None:
        self.channel.close()
        self.server.stop()


@pytest.fixture(scope="module")
def wire(tmp_path_factory):
    wire = Wire(tmp_path_factory.mktemp("wire"))
    yield wire
    wire.close()


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(method=st.sampled_from(sorted(METHODS)), payloads=st.lists(st.binary(max_size=200), min_size=1, max_size=4))
def test_random_bytes_to_any_method_end_in_a_clear_status(wire, method, payloads):
    wire.refuses(method, payloads)


def _register_bytes() -> bytes:
    return pb.RegisterRequest(
        protocol_version=PROTOCOL_VERSION, profile=LAPTOP, examples=10, direction_fingerprint=FINGERPRINT
    ).SerializeToString()


def test_every_truncation_of_a_valid_registration_is_refused(wire):
    whole = _register_bytes()
    codes = {wire.refuses("Register", [whole[:cut]]) for cut in range(len(whole))}
    assert codes <= CLEAR  # none served: the fingerprint is the last field, so any cut breaks or drops it


def test_messages_of_another_type_are_refused(wire):
    """(Bytes of one type that happen to parse as a valid message of another are that message: a
    registration read as a metrics report is round 1 with no values, which is served.)"""
    task = wire.keeper.assigned_task(wire.federation.agents[0].client.device_id).SerializeToString()
    confused = {
        "Register": task,
        "FetchState": task,
        "SubmitUpdate": pb.UpdateChunk(tensor=pb.TensorChunk(name="x", data=task)).SerializeToString(),
    }
    for method, payload in confused.items():
        assert wire.refuses(method, [payload]) is not None, method


def test_a_message_past_the_size_limit_is_refused_before_it_is_read(wire):
    limit = int(wire.federation.config.max_message_mb * 2**20)
    huge = pb.RegisterRequest(protocol_version=PROTOCOL_VERSION, join_secret="x" * 2 * limit).SerializeToString()
    assert wire.refuses("Register", [huge]) == grpc.StatusCode.RESOURCE_EXHAUSTED
    chunk = pb.UpdateChunk(tensor=pb.TensorChunk(name="x", dtype="float32", shape=[limit], data=bytes(2 * limit)))
    assert wire.refuses("SubmitUpdate", [chunk.SerializeToString()]) == grpc.StatusCode.RESOURCE_EXHAUSTED
