"""Merging a round: its accepted updates read back from the ledger and folded into the state, by
the strategy for a training round, by the warm start's solver for round 0's statistics.

Reading only the ledger (never memory) is what lets recovery merge a closed round again after a
crash and arrive at the same state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from safetensors.numpy import load as load_tensors

from coordinator.ledger import Ledger
from coordinator.slices import Slice
from coordinator.state_store import GlobalState
from coordinator.strategy import ReceivedUpdate, Strategy
from coordinator.warm_start import HeadLayout, WarmStartPlan, check_statistics, solve
from edge_runtime.protocol import pb


@dataclass(frozen=True)
class MergeInputs:
    """What a merge needs besides the ledger and the state."""

    strategy: Strategy
    shapes: Mapping[str, tuple[int, ...]]
    slices: Sequence[Slice]
    warm_start: WarmStartPlan
    head_layout: HeadLayout


def merge_into(state: GlobalState, ledger: Ledger, round_: int, inputs: MergeInputs) -> dict:
    """Move `state` by `round_`'s accepted updates, to version round_ + 1; returns the round's part
    of its metrics."""
    assignments = {d: pb.Task.FromString(blob) for d, (blob, _) in ledger.assignments(round_).items()}
    if any(task.work == pb.Task.STATISTICS for task in assignments.values()):
        summary = _merge_statistics(ledger, round_, assignments, state, inputs)
    else:
        summary = _merge_training(ledger, round_, assignments, state.params, inputs)
    state.version = round_ + 1
    return summary


def _merge_training(
    ledger: Ledger, round_: int, assignments: dict[str, pb.Task], params: dict[str, np.ndarray], inputs: MergeInputs
) -> dict:
    updates, losses, classes = [], [], {}
    bytes_up = 0
    for row in ledger.updates(round_):
        header, task = pb.UpdateHeader.FromString(row.header), assignments[row.device_id]
        updates.append(
            ReceivedUpdate(
                row.device_id,
                task,
                header.examples,
                load_tensors(row.tensors) if row.tensors is not None else None,
                tuple(header.scalars),
            )
        )
        losses.append((header.examples, header.loss_before, header.loss_after))
        bytes_up += row.wire_bytes
        kind = pb.DeviceProfile.FromString(ledger.device(row.device_id).profile).device_class or "unknown"
        classes[kind] = classes.get(kind, 0) + 1
    mean = inputs.strategy.aggregate_round(params, inputs.shapes, updates)
    trained = {s.id for s in inputs.slices if any(t in mean for t in s.tensors)}
    total = sum(w for w, _, _ in losses)
    return {
        "round": round_,
        "state_version": round_ + 1,
        "assigned": len(assignments),
        "updates": len(updates),
        "slices_trained": len(trained),
        "slices_total": len(inputs.slices),
        "device_loss_before": sum(w * b for w, b, _ in losses) / total if total else None,
        "device_loss_after": sum(w * a for w, _, a in losses) / total if total else None,
        "bytes_up": bytes_up,
        "bytes_up_per_update": bytes_up / len(updates) if updates else 0,
        "participants_by_class": classes,
    }


def _merge_statistics(
    ledger: Ledger, round_: int, assignments: dict[str, pb.Task], state: GlobalState, inputs: MergeInputs
) -> dict:
    """Solve the warm start's head from the round's statistics; with none received, the head stays
    as it was and training starts from there."""
    received, bytes_up = [], 0
    for row in ledger.updates(round_):
        header = pb.UpdateHeader.FromString(row.header)
        received.append(
            check_statistics(
                inputs.warm_start, inputs.head_layout, header, assignments[row.device_id], load_tensors(row.tensors)
            )
        )
        bytes_up += row.wire_bytes
    summary = {"warm_start": "none: no statistics arrived"}
    if received:
        tensors, state.head_constants, summary = solve(inputs.warm_start, inputs.head_layout, received)
        state.params.update(tensors)
    return {
        "round": round_,
        "state_version": round_ + 1,
        "work": "statistics",
        "assigned": len(assignments),
        "updates": len(received),
        "slices_trained": 0,
        "slices_total": len(inputs.slices),
        "device_loss_before": None,
        "device_loss_after": None,
        "bytes_up": bytes_up,
        "bytes_up_per_update": bytes_up / len(received) if received else 0,
        "participants_by_class": {},
        **summary,
    }
