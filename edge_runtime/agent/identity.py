"""The device's id and token, kept between runs so a restarted agent is the same device to its
coordinator (same slices, no duplicate registration). The token is a secret: owner-only file."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Identity:
    coordinator: str
    device_id: str
    token: str


def load_identity(folder: Path, coordinator: str) -> Identity | None:
    path = folder / "identity.json"
    try:
        identity = Identity(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return identity if identity.coordinator == coordinator else None


def save_identity(folder: Path, identity: Identity) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "identity.json"
    staging = path.with_name("identity.json.writing")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(json.dumps(asdict(identity)))
    os.replace(staging, path)
