"""The coordinator's API as devices see it, independent of the transport: every call is
authenticated (device id + token, compared in constant time), version-checked and size-limited
here, so the gRPC server and the emulator's in-process transport enforce exactly the same rules.
Failures are `CallFailed(code, message)` with gRPC status codes; nothing a device sends is
evaluated as code."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping

import grpc

from coordinator.auth import new_identity, secret_matches, token_hash, token_matches
from coordinator.ledger import DeviceRow
from coordinator.rounds import RoundKeeper
from coordinator.validation import BadRegistration, RejectedUpdate, check_registration
from edge_runtime.protocol import DEVICE_KEY, PROTOCOL_KEY, PROTOCOL_VERSION, TOKEN_KEY, CallFailed, pb
from edge_runtime.protocol.tensors import BadTensors, from_chunks, to_chunks
from edge_runtime.seeded.draws import FINGERPRINT


class CoordinatorService:
    """The device-facing API over one RoundKeeper, a method per RPC with the transport's metadata passed in.
    Every call but register authenticates the device; failures are CallFailed with a gRPC status code."""

    def __init__(self, keeper: RoundKeeper, identities: Callable[[], tuple[str, str]] = new_identity) -> None:
        """`identities` makes (device id, token) pairs; the fleet emulator seeds it so that an
        emulated run is the same run whichever backend hosts its devices."""
        self.keeper = keeper
        self.identities = identities
        self.config = keeper.config
        self.max_bytes = int(keeper.config.max_message_mb * 2**20)

    def _check_version(self, version: int) -> None:
        if version != PROTOCOL_VERSION:
            raise CallFailed(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this coordinator speaks protocol version {PROTOCOL_VERSION}, the agent {version}; "
                "install the matching edgetune version on the device",
            )

    def authenticate(self, metadata: Mapping[str, str]) -> str:
        """The calling device's id, or CallFailed."""
        try:
            version = int(metadata.get(PROTOCOL_KEY, "0"))
        except ValueError:
            version = -1
        self._check_version(version)
        device_id, token = metadata.get(DEVICE_KEY, ""), metadata.get(TOKEN_KEY, "")
        row = self.keeper.ledger.device(device_id) if device_id else None
        if row is None or not token_matches(token, row.token_hash):
            raise CallFailed(grpc.StatusCode.UNAUTHENTICATED, "unknown device or wrong token; register again")
        self.keeper.seen(device_id)
        return device_id

    def register(self, request: pb.RegisterRequest) -> pb.RegisterReply:
        """Admit a device, or a returning one that proves its token (it keeps its id, and so its slices).
        Checks the protocol version, the join secret, that it draws the coordinator's random directions, and
        its registration; replies with its id, its token and the heartbeat interval."""
        self._check_version(request.protocol_version)
        if self.config.join_secret and not request.join_secret:
            raise CallFailed(
                grpc.StatusCode.PERMISSION_DENIED, "this coordinator needs a join secret (give the agent --join-secret)"
            )
        if self.config.join_secret and not secret_matches(request.join_secret, self.config.join_secret):
            raise CallFailed(grpc.StatusCode.PERMISSION_DENIED, "wrong join secret")
        if request.direction_fingerprint != FINGERPRINT:
            raise CallFailed(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this device draws other random directions (fingerprint "
                f"{request.direction_fingerprint!r}, the coordinator's is {FINGERPRINT!r}): "
                "its numpy would rebuild different updates from the same seeds",
            )
        try:
            check_registration(request)
        except BadRegistration as error:
            raise CallFailed(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        profile = request.profile
        known = self.keeper.ledger.device(request.device_id) if request.device_id else None
        if known is not None:  # a returning device keeps its id (and so its slices) if it proves it owns it
            if not token_matches(request.token, known.token_hash):
                raise CallFailed(grpc.StatusCode.UNAUTHENTICATED, f"wrong token for device {request.device_id}")
            device_id, token = request.device_id, request.token
        else:
            device_id, token = self.identities()
        self.keeper.ledger.add_device(
            DeviceRow(
                device_id,
                token_hash(token),
                profile.SerializeToString(),
                request.examples,
                request.direction_fingerprint,
            )
        )
        self.keeper.seen(device_id)
        return pb.RegisterReply(
            device_id=device_id,
            token=token,
            protocol_version=PROTOCOL_VERSION,
            heartbeat_interval_s=self.config.heartbeat_s,
        )

    def heartbeat(self, metadata: Mapping[str, str]) -> pb.HeartbeatReply:
        """Mark the device alive; the reply names the open round (the state version when none is open) and
        the state version."""
        self.authenticate(metadata)
        open_, version = self.keeper.open_round, self.keeper.version
        return pb.HeartbeatReply(round=open_.round if open_ else version, state_version=version)

    def get_task(self, metadata: Mapping[str, str]) -> pb.GetTaskReply:
        """Advance the round loop, then the device's task, or Wait, or Done."""
        device_id = self.authenticate(metadata)
        self.keeper.tick()
        return self.keeper.task_for(device_id)

    def fetch_state(self, metadata: Mapping[str, str], request: pb.FetchStateRequest) -> Iterator[pb.TensorChunk]:
        """Stream the named tensors of the global state (all of them when none are named), tagged with its
        version; the bytes sent are counted in the ledger once the stream has been read to its end."""
        self.authenticate(metadata)
        try:
            version, tensors = self.keeper.state_for_download(list(request.tensors))
        except RejectedUpdate as error:
            raise CallFailed(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        sent = 0
        for chunk in to_chunks(tensors, version):
            sent += chunk.ByteSize()
            yield chunk
        self.keeper.count_download(sent)  # once per download: a write to the ledger

    def submit_update(self, metadata: Mapping[str, str], chunks: Iterable[pb.UpdateChunk]) -> pb.SubmitReply:
        """Take an update streamed as a header then tensor chunks (at most max_message_mb of tensors). Accepted
        is answered only once the ledger holds it; a rejected update answers accepted=False with the reason;
        malformed chunks fail the call with INVALID_ARGUMENT."""
        device_id = self.authenticate(metadata)
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None or not first.HasField("header"):
            raise CallFailed(grpc.StatusCode.INVALID_ARGUMENT, "an update starts with its header")
        wire = first.ByteSize()

        def tensor_chunks():
            nonlocal wire
            for chunk in chunks:
                if not chunk.HasField("tensor"):
                    raise BadTensors("only tensor chunks may follow the header")
                wire += chunk.ByteSize()
                yield chunk.tensor

        try:
            deltas = from_chunks(tensor_chunks(), self.max_bytes)
            self.keeper.accept(device_id, first.header, deltas, wire)
        except BadTensors as error:
            self.keeper.ledger.reject(first.header.round, device_id, str(error))
            raise CallFailed(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        except RejectedUpdate as error:
            return pb.SubmitReply(accepted=False, reason=str(error))
        return pb.SubmitReply(accepted=True)

    def report_metrics(self, metadata: Mapping[str, str], request: pb.MetricsReport) -> pb.MetricsReply:
        """Record a device's metrics for a round: at most 64 finite values with names of at most 64 characters."""
        device_id = self.authenticate(metadata)
        values = dict(request.values)
        if len(values) > 64 or any(len(k) > 64 or not math.isfinite(v) for k, v in values.items()):
            raise CallFailed(grpc.StatusCode.INVALID_ARGUMENT, "metrics are at most 64 finite values with short names")
        self.keeper.record_device_metrics(device_id, request.round, values)
        return pb.MetricsReply()
