"""Tensors on the wire: float32 arrays cut into chunks and put back together, with every claim
a sender makes about shape and size checked before a byte is trusted."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from edge_runtime.protocol import pb

CHUNK_BYTES = 1 << 20  # far below gRPC's 4 MB default message limit
DTYPE = "float32"


class BadTensors(ValueError):
    """Chunks that do not describe well-formed float32 tensors."""


def to_chunks(
    tensors: Mapping[str, np.ndarray], state_version: int = 0, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pb.TensorChunk]:
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        for offset in range(0, max(len(data), 1), chunk_bytes):
            yield pb.TensorChunk(
                name=name,
                shape=list(array.shape),
                dtype=DTYPE,
                offset=offset,
                data=data[offset : offset + chunk_bytes],
                state_version=state_version,
            )


def from_chunks(chunks: Iterable[pb.TensorChunk], max_bytes: int) -> dict[str, np.ndarray]:
    """Reassemble chunks sent in order; refuses gaps, overlaps, shape changes mid-tensor, other
    dtypes and anything past `max_bytes` in all (checked before allocating)."""
    buffers: dict[str, bytearray] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    total = 0
    for chunk in chunks:
        if chunk.dtype != DTYPE:
            raise BadTensors(f"tensor {chunk.name!r}: dtype {chunk.dtype!r}, only {DTYPE} is accepted")
        shape = tuple(chunk.shape)
        # Python ints: a forged shape must not wrap around (as int64 would) to a small size.
        size = 4 * math.prod(shape)
        if chunk.name not in buffers:
            total += size
            if total > max_bytes:
                raise BadTensors(f"tensors exceed the {max_bytes} byte limit")
            buffers[chunk.name], shapes[chunk.name] = bytearray(), shape
        elif shapes[chunk.name] != shape:
            raise BadTensors(f"tensor {chunk.name!r} changed shape between chunks")
        buffer = buffers[chunk.name]
        if chunk.offset != len(buffer) or len(buffer) + len(chunk.data) > size:
            raise BadTensors(
                f"tensor {chunk.name!r}: chunk at byte {chunk.offset} does not continue "
                f"the {len(buffer)} bytes received of {size}"
            )
        buffer.extend(chunk.data)
    out = {}
    for name, buffer in buffers.items():
        shape = shapes[name]
        if len(buffer) != 4 * math.prod(shape):
            raise BadTensors(f"tensor {name!r} is incomplete: {len(buffer)} bytes for shape {shape}")
        out[name] = np.frombuffer(bytes(buffer), dtype="<f4").reshape(shape).astype(np.float32)
    return out
