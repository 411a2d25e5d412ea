"""Spry (Panchal et al., NeurIPS 2024): each device trains its own slices with forward gradients.

Slices are dealt by rendezvous hashing: in round r, slice s ranks the devices by
hash(device id, s, r) and goes to the best-ranked one that still has room (at most
ceil(slices / devices) slices each, and only what fits its memory budget). So the binding is a
function of device ids alone (not of the order devices were sampled or asked for work, which is
what Spry's published code binds to), a device leaving moves only the slices it held, and since the
ranking changes with the round, every device's data reaches every slice over time. With more
devices than slices the devices left without one share, each taking its best-ranked slice among
the least-held; a slice that fits nobody's budget stays untrained this round (its value is kept).
"""

from __future__ import annotations

import hashlib
import math

from coordinator.planners.base import Assignment, RoundPlanner, stable_order


def _rank(device_id: str, slice_id: str, round_: int) -> bytes:
    return hashlib.sha256(f"{device_id}|{slice_id}|{round_}".encode()).digest()


class Spry(RoundPlanner):
    name = "spry"
    summary = "each device trains its own slices with forward gradients"
    default_method = "forward-grad"

    def assign(self, round_, devices, slices, capacity):
        plan = Assignment()
        usable = []
        for device in stable_order(devices):
            if capacity[device.id].usable:
                usable.append(device.id)
            else:
                plan.excluded[device.id] = capacity[device.id].reason
        if not usable:
            plan.uncovered = [s.id for s in slices]
            return plan
        quota = math.ceil(len(slices) / len(usable))
        budget = {d: capacity[d].trainable_bytes for d in usable}
        taken: dict[str, list] = {d: [] for d in usable}
        holders = {s.id: 0 for s in slices}
        ordered = sorted(slices, key=lambda s: -s.nbytes)  # big slices first, while budgets are whole
        for index, piece in enumerate(ordered):
            left, idle = len(ordered) - index, sum(1 for d in usable if not taken[d])

            def room(d: str) -> bool:  # a second slice only while no device would be left without one
                # room is called only within this iteration: the loop variables it reads late are the right ones.
                quota_left = len(taken[d]) < quota and (not taken[d] or left > idle)  # noqa: B023
                return quota_left and budget[d] >= piece.nbytes  # noqa: B023

            ranked = sorted(usable, key=lambda d: _rank(d, piece.id, round_))
            home = next((d for d in ranked if room(d)), None)
            home = home or next((d for d in ranked if budget[d] >= piece.nbytes), None)
            if home is None:
                plan.uncovered.append(piece.id)
                continue
            taken[home].append(piece)
            budget[home] -= piece.nbytes
            holders[piece.id] += 1
        for device in usable:
            if taken[device]:
                continue
            fits = [s for s in slices if s.nbytes <= budget[device]]
            if not fits:
                plan.excluded[device] = "no slice fits its memory budget"
                continue
            piece = min(fits, key=lambda s: (holders[s.id], _rank(device, s.id, round_)))
            taken[device].append(piece)
            holders[piece.id] += 1
        order = {s.id: i for i, s in enumerate(slices)}
        plan.slices = {d: sorted(p, key=lambda s: order[s.id]) for d, p in taken.items() if p}
        return plan
