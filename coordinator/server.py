"""The coordinator as a gRPC server: the service behind grpcio, TLS when configured, and the
thread that opens and closes rounds on time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc

from coordinator.config import CoordinatorConfig
from coordinator.malformed import RejectMalformed
from coordinator.rounds import RoundKeeper
from coordinator.service import CoordinatorService
from edge_runtime.errors import UserError
from edge_runtime.protocol import CallFailed, rpc

TICK_S = 0.2


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}


def _guarded(call: Callable, context: grpc.ServicerContext):
    try:
        return call()
    except CallFailed as failure:
        context.abort(failure.code, failure.message)


class Servicer(rpc.CoordinatorServicer):
    def __init__(self, service: CoordinatorService) -> None:
        self.service = service

    def Register(self, request, context):
        return _guarded(lambda: self.service.register(request), context)

    def Heartbeat(self, request, context):
        return _guarded(lambda: self.service.heartbeat(_metadata(context)), context)

    def GetTask(self, request, context):
        return _guarded(lambda: self.service.get_task(_metadata(context)), context)

    def FetchState(self, request, context):
        try:
            yield from self.service.fetch_state(_metadata(context), request)
        except CallFailed as failure:
            context.abort(failure.code, failure.message)

    def SubmitUpdate(self, request_iterator, context):
        return _guarded(lambda: self.service.submit_update(_metadata(context), request_iterator), context)

    def ReportMetrics(self, request, context):
        return _guarded(lambda: self.service.report_metrics(_metadata(context), request), context)


def _read(path: str | None, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise UserError(f"cannot read the {what} {path}: {error.strerror}") from None


class CoordinatorServer:
    """Serves until every round is merged (then a grace period, so agents hear that it is over)."""

    def __init__(
        self,
        config: CoordinatorConfig,
        keeper: RoundKeeper,
        max_workers: int = 16,
        service: CoordinatorService | None = None,
        drive: bool = True,
    ) -> None:
        """`drive=False` leaves opening and closing rounds to whoever calls keeper.tick() (the fleet
        emulator, whose clock is virtual)."""
        self.config, self.keeper = config, keeper
        limit = int(config.max_message_mb * 2**20) + 2**16
        # SO_REUSEPORT off: with it (gRPC's default) a second server on a busy port starts, and the
        # kernel splits new connections between the two coordinators.
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=[RejectMalformed()],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        rpc.add_CoordinatorServicer_to_server(Servicer(service or CoordinatorService(keeper)), self.server)
        try:
            self._bind(config)
        except RuntimeError:  # grpc's way of refusing an address it cannot bind
            self.port = 0
        if self.port == 0:
            raise UserError(
                f"cannot listen on {config.listen}: the port is in use, or the host is not an address of this machine"
            )
        self._stop = threading.Event()
        self.failure: BaseException | None = None
        self._driver = threading.Thread(target=self._drive, name="rounds", daemon=True) if drive else None

    def _bind(self, config: CoordinatorConfig) -> None:
        if config.tls_cert:
            credentials = grpc.ssl_server_credentials(
                [(_read(config.tls_key, "TLS key"), _read(config.tls_cert, "TLS certificate"))]
            )
            self.port = self.server.add_secure_port(config.listen, credentials)
        else:
            self.port = self.server.add_insecure_port(config.listen)

    def _drive(self) -> None:
        try:
            while not self._stop.is_set():
                self.keeper.tick()
                self._stop.wait(TICK_S)
        except BaseException as error:
            # Crash-only: a coordinator that cannot advance its rounds stops (a restart recovers from
            # the ledger) rather than serving on, with a dead driver, rounds that never close. The
            # error surfaces where the server is waited on (the command raises it).
            self.failure = error
            self._stop.set()

    def start(self) -> CoordinatorServer:
        self.server.start()
        if self._driver:
            self._driver.start()
        return self

    def wait_finished(self, grace_s: float | None = None) -> None:
        while not self.keeper.finished and not self._stop.is_set():
            time.sleep(TICK_S)
        if self.keeper.finished:
            # Serve on until every device still online (heartbeating, so perhaps still training a task of
            # the last round that closed without it) has asked for work and heard "done", for at most a
            # round deadline: an agent that finds the port closed instead retries until stopped by hand.
            shortest = max(self.config.heartbeat_s, self.keeper.retry_after_s) if grace_s is None else grace_s
            started = time.monotonic()
            time.sleep(shortest)
            while (
                not self.keeper.everyone_told_done()
                and time.monotonic() - started < self.config.round_deadline_s
                and not self._stop.is_set()
            ):
                time.sleep(TICK_S)

    def stop(self) -> None:
        self._stop.set()
        self.server.stop(grace=1.0).wait()
        self.keeper.close()
