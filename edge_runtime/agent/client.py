"""How an agent talks to its coordinator: over gRPC, or in process (the fleet emulator), behind
one interface, so an emulated device runs the very agent code a phone runs.

The gRPC client retries what a flaky link causes (UNAVAILABLE, DEADLINE_EXCEEDED) with capped
exponential backoff and jitter, forever unless told to stop: a device that loses its network or
whose coordinator restarts reconnects by itself. What the coordinator refuses (wrong version,
bad token, invalid update) is not retried: it raises `CallRejected` with the coordinator's words.
"""

from __future__ import annotations

import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping

import grpc
import numpy as np

from edge_runtime.protocol import DEVICE_KEY, PROTOCOL_KEY, PROTOCOL_VERSION, TOKEN_KEY, CallFailed, pb, rpc
from edge_runtime.protocol.tensors import CHUNK_BYTES, from_chunks, to_chunks

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# The largest state a device accepts from a coordinator (a LoRA adapter is a few MB).
MAX_STATE_BYTES = 2 * 2**30


class CallRejected(Exception):
    """The coordinator refused a call, or the client stopped retrying when told to stop: the gRPC status
    code and the coordinator's words. Not retried."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code, self.message = code, message


class CoordinatorClient(ABC):
    """An agent's calls to its coordinator, whatever the transport. Once registered, `device_id` and `token`
    go with every other call, as metadata; a refused call raises CallRejected."""

    device_id: str = ""
    token: str = ""

    def metadata(self) -> dict[str, str]:
        """The call metadata naming the device, its token and the protocol version."""
        return {DEVICE_KEY: self.device_id, TOKEN_KEY: self.token, PROTOCOL_KEY: str(PROTOCOL_VERSION)}

    @abstractmethod
    def register(self, request: pb.RegisterRequest) -> pb.RegisterReply:
        """Register the device, or again with its id and token; the reply holds the id and token to keep."""

    @abstractmethod
    def heartbeat(self) -> pb.HeartbeatReply:
        """Tell the coordinator the device is alive; the reply names the open round and the state version."""

    @abstractmethod
    def get_task(self) -> pb.GetTaskReply:
        """Ask for work: a task, or Wait (with how long), or Done."""

    @abstractmethod
    def _state_chunks(self, request: pb.FetchStateRequest) -> Iterator[pb.TensorChunk]: ...

    @abstractmethod
    def _submit_chunks(self, chunks: Iterator[pb.UpdateChunk]) -> pb.SubmitReply: ...

    @abstractmethod
    def report_metrics(self, report: pb.MetricsReport) -> None:
        """Send the device's metrics for a round."""

    def fetch_state(self, names: list[str] | None = None) -> tuple[int, dict[str, np.ndarray]]:
        """(state version, the named tensors of the global state, all of them when `names` is empty), from chunks
        of at most MAX_STATE_BYTES in all; a state that arrives in mixed versions is a CallRejected (DATA_LOSS)."""
        versions: set[int] = set()

        def chunks():
            for chunk in self._state_chunks(pb.FetchStateRequest(tensors=names or [])):
                versions.add(chunk.state_version)
                yield chunk

        tensors = from_chunks(chunks(), MAX_STATE_BYTES)
        if len(versions) > 1:
            raise CallRejected(grpc.StatusCode.DATA_LOSS, f"state arrived in mixed versions {sorted(versions)}")
        return (versions.pop() if versions else 0), tensors

    def submit(self, header: pb.UpdateHeader, deltas: Mapping[str, np.ndarray]) -> pb.SubmitReply:
        """Send an update, its header first, then `deltas` in chunks of at most CHUNK_BYTES; the reply says
        whether it was accepted."""

        def chunks():
            yield pb.UpdateChunk(header=header)
            for chunk in to_chunks(deltas, chunk_bytes=CHUNK_BYTES):
                yield pb.UpdateChunk(tensor=chunk)

        return self._submit_chunks(chunks())


class GrpcClient(CoordinatorClient):
    """Over gRPC, with TLS when given a root certificate. A call retries UNAVAILABLE and DEADLINE_EXCEEDED
    with capped exponential backoff and jitter until it succeeds or `stop` is set; other codes raise
    CallRejected. The heartbeat thread and the work share one client."""

    def __init__(
        self,
        address: str,
        *,
        root_cert: bytes | None = None,
        stop: threading.Event | None = None,
        log: Callable[[str], None] = print,
        timeout_s: float = 60.0,
    ) -> None:
        credentials = grpc.ssl_channel_credentials(root_certificates=root_cert) if root_cert else None
        options = [("grpc.max_receive_message_length", 8 * 2**20), ("grpc.max_send_message_length", 8 * 2**20)]
        self.channel = (
            grpc.secure_channel(address, credentials, options=options)
            if credentials
            else grpc.insecure_channel(address, options=options)
        )
        self.stub = rpc.CoordinatorStub(self.channel)
        self.address, self.stop, self.log, self.timeout_s = address, stop or threading.Event(), log, timeout_s
        # One outage, one pair of lines, however many threads (the heartbeat, the work) meet it.
        self._outage, self._outage_lock = False, threading.Lock()

    def _outage_changed(self, down: bool, code: grpc.StatusCode | None = None) -> None:
        with self._outage_lock:
            if self._outage == down:
                return
            self._outage = down
        self.log(
            f"agent: coordinator {self.address} unreachable ({code.name}); retrying with backoff"
            if down
            else f"agent: coordinator {self.address} is back"
        )

    def _call(self, attempt: Callable[[], object]):
        delay = 0.5
        while True:
            try:
                result = attempt()
                self._outage_changed(False)
                return result
            except grpc.RpcError as error:
                code = error.code()
                if code not in _RETRYABLE:
                    raise CallRejected(code, error.details() or "") from None
                self._outage_changed(True, code)
                if self.stop.wait(delay * random.uniform(0.5, 1.5)):
                    raise CallRejected(code, "stopped while the coordinator was unreachable") from None
                delay = min(delay * 2, 30.0)

    def _md(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.metadata().items())

    def register(self, request):
        """Register, retried through outages; each attempt times out after timeout_s."""
        return self._call(lambda: self.stub.Register(request, timeout=self.timeout_s))

    def heartbeat(self):
        """A heartbeat, retried through outages."""
        return self._call(
            lambda: self.stub.Heartbeat(pb.HeartbeatRequest(), metadata=self._md(), timeout=self.timeout_s)
        )

    def get_task(self):
        """Ask for work, retried through outages."""
        return self._call(lambda: self.stub.GetTask(pb.GetTaskRequest(), metadata=self._md(), timeout=self.timeout_s))

    def _state_chunks(self, request):
        # A stream cut halfway is fetched again from the start, never stitched from two versions.
        return iter(
            self._call(lambda: list(self.stub.FetchState(request, metadata=self._md(), timeout=self.timeout_s * 10)))
        )

    def _submit_chunks(self, chunks):
        sent = list(chunks)  # kept, so a retry after a cut link sends the same update again
        return self._call(lambda: self.stub.SubmitUpdate(iter(sent), metadata=self._md(), timeout=self.timeout_s * 10))

    def report_metrics(self, report):
        """Send metrics, retried through outages."""
        self._call(lambda: self.stub.ReportMetrics(report, metadata=self._md(), timeout=self.timeout_s))

    def close(self) -> None:
        """Close the channel; the client cannot call again."""
        self.channel.close()


class InProcessClient(CoordinatorClient):
    """Calls a `coordinator.service.CoordinatorService` directly: no sockets, no serialisation of
    the messages themselves, the same checks."""

    def __init__(self, service) -> None:
        self.service = service

    def _call(self, attempt: Callable[[], object]):
        try:
            return attempt()
        except CallFailed as failure:
            raise CallRejected(failure.code, failure.message) from None

    def register(self, request):
        """The service's register; its CallFailed raised as CallRejected, as for every call here."""
        return self._call(lambda: self.service.register(request))

    def heartbeat(self):
        """The service's heartbeat, with this device's metadata."""
        return self._call(lambda: self.service.heartbeat(self.metadata()))

    def get_task(self):
        """The service's get_task, with this device's metadata."""
        return self._call(lambda: self.service.get_task(self.metadata()))

    def _state_chunks(self, request):
        return iter(self._call(lambda: list(self.service.fetch_state(self.metadata(), request))))

    def _submit_chunks(self, chunks):
        return self._call(lambda: self.service.submit_update(self.metadata(), chunks))

    def report_metrics(self, report):
        """The service's report_metrics, with this device's metadata."""
        self._call(lambda: self.service.report_metrics(self.metadata(), report))
