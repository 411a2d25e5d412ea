"""Spry (Panchal et al., NeurIPS 2024): each device trains its own slices with forward gradients.

Slice j goes, in round r, to the device at position (j + r) mod D of the stable device order, so
with more devices than slices every device still gets one (devices share), with more slices than
devices each device takes every D-th slice (wrap around), the binding follows device ids, and over
rounds every device's data reaches every slice. A device takes a slice only while the slice fits
its memory budget; a slice that does not fit its device goes to the device with the most budget
left that can hold it, and one that fits nobody stays untrained this round (its value is kept).
"""

from __future__ import annotations

from coordinator.planners.base import Assignment, RoundPlanner, stable_order


class Spry(RoundPlanner):
    name = "spry"
    default_method = "forward-grad"

    def assign(self, round_, devices, slices, capacity):
        plan = Assignment()
        usable = []
        for device in stable_order(devices):
            cap = capacity[device.id]
            if cap.usable:
                usable.append(device)
            else:
                plan.excluded[device.id] = cap.reason
        if not usable:
            plan.uncovered = [s.id for s in slices]
            return plan
        budget = {d.id: capacity[d.id].trainable_bytes for d in usable}
        taken = {d.id: [] for d in usable}
        holders = {s.id: 0 for s in slices}
        d_count = len(usable)
        for j, piece in enumerate(slices):
            home = usable[(j + round_) % d_count].id
            if budget[home] < piece.nbytes:
                roomiest = max(usable, key=lambda d: budget[d.id]).id
                home = roomiest if budget[roomiest] >= piece.nbytes else None
            if home is None:
                plan.uncovered.append(piece.id)
                continue
            taken[home].append(piece)
            budget[home] -= piece.nbytes
            holders[piece.id] += 1
        # More devices than slices: the idle ones share, each its own position's slice when it fits,
        # else the least-held slice that fits.
        for position, device in enumerate(usable):
            if taken[device.id]:
                continue
            preferred = slices[(position - round_) % len(slices)]
            fits = [s for s in slices if s.nbytes <= budget[device.id]]
            if not fits:
                plan.excluded[device.id] = "no slice fits its memory budget"
                continue
            piece = preferred if preferred in fits else min(fits, key=lambda s: (holders[s.id], s.nbytes))
            taken[device.id].append(piece)
            holders[piece.id] += 1
        plan.slices = {d: s for d, s in taken.items() if s}
        return plan
