"""The coordinator/agent wire protocol: version, call metadata, the generated messages, and the
failure of a call (`CallFailed`, which the coordinator's service raises and an in-process client
turns into the agent's `CallRejected`).

`proto/coordinator.proto` is the source of truth; its stubs (`stubs/`) are generated when the
package is built or installed (setup.py). This package imports numpy and grpc only, so the
torch-free device agent uses it as it is.
"""

from __future__ import annotations

import grpc

try:
    from edge_runtime.protocol.stubs import coordinator_pb2 as pb
    from edge_runtime.protocol.stubs import coordinator_pb2_grpc as rpc
except ImportError as error:  # a source checkout that was never built
    raise ImportError(
        "the gRPC stubs are generated at install time: run `pip install -e .` (or `make setup`) in the project folder"
    ) from error

# Bump on any change that an agent of the previous version would misread.
PROTOCOL_VERSION = 4

DEVICE_KEY, TOKEN_KEY, PROTOCOL_KEY = "x-edgetune-device", "x-edgetune-token", "x-edgetune-protocol"


class CallFailed(Exception):
    """A call refused with a gRPC status code and a one-line message (the transport sends both)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


__all__ = ["DEVICE_KEY", "PROTOCOL_KEY", "PROTOCOL_VERSION", "TOKEN_KEY", "CallFailed", "pb", "rpc"]
