"""The coordinator/agent wire protocol: version, call metadata, and the generated messages.

`proto/coordinator.proto` is the source of truth; its stubs (`stubs/`) are generated when the
package is built or installed (setup.py). This package imports numpy and grpc only, so the
torch-free device agent uses it as it is.
"""

from __future__ import annotations

try:
    from edge_runtime.protocol.stubs import coordinator_pb2 as pb
    from edge_runtime.protocol.stubs import coordinator_pb2_grpc as rpc
except ImportError as error:  # a source checkout that was never built
    raise ImportError("the gRPC stubs are generated at install time: run `pip install -e .` "
                      "(or `make setup`) in the project folder") from error

# Bump on any change that an agent of the previous version would misread.
PROTOCOL_VERSION = 2

DEVICE_KEY, TOKEN_KEY, PROTOCOL_KEY = "x-edgetune-device", "x-edgetune-token", "x-edgetune-protocol"

__all__ = ["DEVICE_KEY", "PROTOCOL_KEY", "PROTOCOL_VERSION", "TOKEN_KEY", "pb", "rpc"]
