"""Hostile inputs for every call of the coordinator: what a broken or malicious device could send.
Each builder starts from a well-formed message and breaks it in one way that a coordinator must
refuse (the valid originals are accepted in the tests, so a refusal is never an accident of the
builder)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from edge_runtime.protocol import DEVICE_KEY, PROTOCOL_KEY, TOKEN_KEY, pb
from edge_runtime.protocol.tensors import to_chunks

NOT_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
# Edges first: SQLite's INTEGER ends at 2**63 - 1 and numpy's int64 products wrap around.
UINT64 = st.one_of(st.sampled_from([2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1))
WRAPPING_SHAPES = st.sampled_from([[2**32, 2**32], [2**63], [2**64 - 1, 2], [2**62, 4], [0], []])


@dataclass
class ValidUpdate:
    task: pb.Task
    shapes: dict[str, tuple[int, ...]]  # every trainable tensor of the model
    foreign: str  # a tensor of another device's slice

    def header(self) -> pb.UpdateHeader:
        return pb.UpdateHeader(
            task_id=self.task.task_id,
            round=self.task.round,
            examples=self.task.batch_size,
            steps=1,
            loss_before=0.7,
            loss_after=0.6,
            train_seconds=1.0,
        )

    def deltas(self) -> dict[str, np.ndarray]:
        return {name: np.full(self.shapes[name], 1e-3, np.float32) for name in self.task.tensors}

    def chunks(self, header=None, deltas=None) -> list[pb.UpdateChunk]:
        tensors = to_chunks(self.deltas() if deltas is None else deltas, chunk_bytes=64)
        return [pb.UpdateChunk(header=header or self.header())] + [pb.UpdateChunk(tensor=c) for c in tensors]


def _header_field(draw, update: ValidUpdate):
    header = update.header()
    field = draw(
        st.sampled_from(["round", "task_id", "steps", "examples", "loss_before", "loss_after", "train_seconds"])
    )
    task = update.task
    value = {
        "round": UINT64.filter(lambda r: r != task.round),
        "task_id": st.text(max_size=40).filter(lambda t: t != task.task_id),
        "steps": st.one_of(st.just(0), st.integers(task.steps + 1, 2**32 - 1)),
        "examples": st.one_of(st.just(0), st.integers(task.batch_size + 1, 2**64 - 1)),
    }.get(field, NOT_FINITE)
    setattr(header, field, draw(value))
    return update.chunks(header=header)


def _tensor_claim(draw, update: ValidUpdate):
    """A chunk that lies about its dtype, shape or place in the tensor."""
    chunks = update.chunks()
    chunk = chunks[draw(st.integers(1, len(chunks) - 1))].tensor
    field = draw(st.sampled_from(["dtype", "shape", "offset"]))
    if field == "dtype":
        chunk.dtype = draw(st.sampled_from(["float64", "float16", "int8", "", "object", "<f4"]))
    elif field == "shape":
        chunk.shape[:] = draw(
            st.one_of(WRAPPING_SHAPES, st.lists(UINT64, max_size=4)).filter(lambda s: tuple(s) != tuple(chunk.shape))
        )
    else:
        chunk.offset = draw(UINT64.filter(lambda o: o != chunk.offset))
    return chunks


def _phantom_tensor(draw, update: ValidUpdate):
    """An extra tensor that claims a shape whose element count overflows int64 (to 0 or below) and
    sends no bytes: it must not pass for an empty tensor."""
    chunks = update.chunks()
    name = draw(st.sampled_from([update.foreign, "phantom"]))
    shape = draw(WRAPPING_SHAPES.filter(lambda s: len(s) > 0 and 0 not in s))
    chunks.append(pb.UpdateChunk(tensor=pb.TensorChunk(name=name, shape=shape, dtype="float32")))
    return chunks


def _truncated(draw, update: ValidUpdate):
    chunks = update.chunks()
    last = chunks[-1].tensor
    last.data = last.data[: draw(st.integers(0, len(last.data) - 1))]
    return chunks


def _cut_stream(draw, update: ValidUpdate):
    chunks = update.chunks()
    return chunks[: draw(st.integers(0, len(chunks) - 2))]


def _wrong_tensors(draw, update: ValidUpdate):
    deltas = update.deltas()
    kind = draw(st.sampled_from(["missing", "foreign slice", "unknown name", "reshaped"]))
    first = next(iter(deltas))
    if kind == "missing":
        del deltas[first]
    elif kind == "foreign slice":
        deltas[update.foreign] = np.zeros(update.shapes[update.foreign], np.float32)
    elif kind == "unknown name":
        unknown = draw(st.text(min_size=1, max_size=40).filter(lambda n: n not in update.shapes))
        deltas[unknown] = np.zeros(2, np.float32)
    else:
        deltas[first] = deltas[first].reshape(-1)
    return update.chunks(deltas=deltas)


def _bad_values(draw, update: ValidUpdate):
    deltas = update.deltas()
    name = draw(st.sampled_from(sorted(deltas)))
    if draw(st.booleans()):
        deltas[name].flat[draw(st.integers(0, deltas[name].size - 1))] = draw(NOT_FINITE)
    else:  # finite, but far past the norm bound
        deltas[name][...] = draw(st.floats(1e3, 1e30))
    return update.chunks(deltas=deltas)


def _out_of_order(draw, update: ValidUpdate):
    chunks = update.chunks()
    kind = draw(st.sampled_from(["no header", "two headers", "header last", "duplicated chunk"]))
    if kind == "no header":
        return chunks[1:]
    if kind == "two headers":
        return chunks[:2] + [chunks[0]] + chunks[2:]
    if kind == "header last":
        return chunks[1:] + chunks[:1]
    at = draw(st.integers(1, len(chunks) - 1))
    return chunks[: at + 1] + [chunks[at]] + chunks[at + 1 :]


UPDATE_ATTACKS = [
    _header_field,
    _tensor_claim,
    _phantom_tensor,
    _truncated,
    _cut_stream,
    _wrong_tensors,
    _bad_values,
    _out_of_order,
]


@st.composite
def hostile_updates(draw, update: ValidUpdate, attack) -> list[pb.UpdateChunk]:
    return attack(draw, update)


@st.composite
def forged_metadata(draw, good: dict[str, str]) -> dict[str, str]:
    """Call metadata with a forged or missing device id, token or protocol version."""
    metadata = dict(good)
    for key in draw(st.sets(st.sampled_from([DEVICE_KEY, TOKEN_KEY, PROTOCOL_KEY]), min_size=1)):
        if draw(st.booleans()):
            metadata.pop(key)
        else:
            metadata[key] = draw(st.text(max_size=80).filter(lambda v, key=key: v != good[key]))
    return metadata


@st.composite
def hostile_registrations(draw, good: pb.RegisterRequest, known: tuple[str, str]) -> pb.RegisterRequest:
    request = pb.RegisterRequest()
    request.CopyFrom(good)
    profile = request.profile
    kind = draw(
        st.sampled_from(
            ["number", "version", "fingerprint", "secret", "examples", "label", "list", "no capacity", "stolen id"]
        )
    )
    if kind == "number":
        field = draw(
            st.sampled_from(
                [
                    "gflops_fp32",
                    "gflops_fp16",
                    "gflops_int8",
                    "uplink_mbps",
                    "downlink_mbps",
                    "latency_ms",
                    "memory_bandwidth_gbps",
                ]
            )
        )
        setattr(profile, field, draw(st.one_of(NOT_FINITE, st.floats(max_value=-1e-300))))
    elif kind == "version":
        request.protocol_version = draw(st.integers(0, 2**32 - 1).filter(lambda v: v != good.protocol_version))
    elif kind == "fingerprint":
        request.direction_fingerprint = draw(st.text(max_size=64).filter(lambda f: f != good.direction_fingerprint))
    elif kind == "secret":
        request.join_secret = draw(st.text(max_size=64).filter(lambda s: s != good.join_secret))
    elif kind == "examples":
        request.examples = draw(st.integers(2**31 + 1, 2**64 - 1))
    elif kind == "label":
        setattr(profile, draw(st.sampled_from(["name", "device_class"])), draw(st.text(min_size=65, max_size=300)))
    elif kind == "list":
        profile.backends[:] = draw(st.lists(st.text(max_size=8), min_size=17, max_size=40))
    elif kind == "no capacity":
        if draw(st.booleans()):
            profile.memory_cap_bytes = 0
        else:
            profile.gflops_fp32 = profile.gflops_int8 = 0
    else:
        request.device_id, request.token = known[0], draw(st.text(max_size=64).filter(lambda t: t != known[1]))
    return request
