"""The global trainable state on disk: one safetensors file per version, written atomically.

A file is written beside its final name, fsynced, renamed over it, and the folder fsynced, so a
crash leaves either the old file or the whole new one. Its sha256 goes into the ledger in the same
transaction that closes the round; a file whose hash does not match (a torn or damaged write) is
detected on load and the previous version is used instead (coordinator/recovery.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load, save

from coordinator.faults import crash_point

OPTIMIZER_PREFIX = "server_optimizer."


class DamagedCheckpoint(RuntimeError):
    pass


@dataclass
class GlobalState:
    """What a checkpoint holds: the trained tensors after `version` merged rounds, the server
    optimizer's moments, and the head's warm-start constants (logit scale, calibration offsets)."""

    version: int
    params: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    head_constants: dict = field(default_factory=dict)


def write_atomically(path: Path, data: bytes) -> None:
    staging = path.with_name(path.name + ".writing")
    with open(staging, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    crash_point("checkpoint-staged")
    os.replace(staging, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class StateStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, state: GlobalState) -> tuple[str, str]:
        """(file name, sha256) of the written version; the head's warm-start constants ride in its metadata."""
        data = save(
            {**state.params, **{OPTIMIZER_PREFIX + k: v for k, v in state.optimizer.items()}},
            metadata={"version": str(state.version), "head_constants": json.dumps(state.head_constants)},
        )
        name = f"state-{state.version:06d}.safetensors"
        write_atomically(self.folder / name, data)
        return name, hashlib.sha256(data).hexdigest()

    def read(self, version: int, name: str, sha256: str) -> GlobalState:
        path = self.folder / name
        try:
            data = path.read_bytes()
        except OSError as error:
            raise DamagedCheckpoint(f"{path}: {error.strerror}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise DamagedCheckpoint(f"{path} does not match the hash the ledger recorded (torn or damaged)")
        everything = load(data)
        optimizer = {k[len(OPTIMIZER_PREFIX) :]: v for k, v in everything.items() if k.startswith(OPTIMIZER_PREFIX)}
        tensors = {k: v for k, v in everything.items() if not k.startswith(OPTIMIZER_PREFIX)}
        return GlobalState(version, tensors, optimizer, _head_constants(data))


def _head_constants(data: bytes) -> dict:
    """The metadata of a safetensors blob: its 8-byte little-endian header length, then the JSON header."""
    length = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + length]).get("__metadata__", {})
    return json.loads(metadata.get("head_constants", "{}"))
