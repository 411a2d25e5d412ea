"""What an arriving update must be before it is stored: the checks that need only the device's
task and the update itself (the open round, who already answered and the ledger write stay with the
round's state machine in coordinator/rounds.py), and telling a resend from a second update.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from safetensors.numpy import save as save_tensors

from coordinator.ledger import Ledger
from coordinator.replay import replay_task
from coordinator.validation import RejectedUpdate, check_deltas, check_header, check_seeds
from coordinator.warm_start import HeadLayout, WarmStartPlan, check_statistics
from edge_runtime.protocol import pb

# |projected gradient| beyond this is not a gradient; ZO scalars are O(1) for a sane loss.
MAX_SCALAR = 1e6


def checked_blob(
    task: pb.Task,
    header: pb.UpdateHeader,
    deltas: Mapping[str, np.ndarray],
    shapes: Mapping[str, tuple[int, ...]],
    max_update_norm: float,
    warm_start: WarmStartPlan,
    head_layout: HeadLayout,
) -> bytes | None:
    """The bytes to store for a valid update (None for a seeds upload, replayed at merge time), or
    RejectedUpdate saying what is wrong with it."""
    if task.work == pb.Task.STATISTICS:
        check_statistics(warm_start, head_layout, header, task, deltas)
        return save_tensors(dict(deltas))
    check_header(header, task)
    if task.upload == pb.Task.SEEDS:
        if deltas:
            raise RejectedUpdate("a seeds upload carries no tensors")
        check_seeds(header, task, MAX_SCALAR)
        check_deltas(replay_task(task, header.scalars, shapes), task, shapes, max_update_norm)
        return None
    check_deltas(deltas, task, shapes, max_update_norm)
    return save_tensors(dict(deltas))


def is_resend(
    ledger: Ledger, version: int, device_id: str, header: pb.UpdateHeader, deltas: Mapping[str, np.ndarray]
) -> bool:
    """True when the ledger holds this very update: a link cut after the commit but before the
    answer arrived makes the agent send it again, and calling that a rejection would tell the
    device its merged work was lost (even after its round closed)."""
    if header.round > version:  # a round not opened yet holds nothing (and may not fit an SQLite int)
        return False
    stored = ledger.update(header.round, device_id)
    if stored is None or pb.UpdateHeader.FromString(stored.header) != header:
        return False
    if stored.tensors is None:  # a seeds upload
        return not deltas
    return stored.tensors == save_tensors(dict(deltas))
