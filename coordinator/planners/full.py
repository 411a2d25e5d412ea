"""Every device trains every trainable tensor: federated averaging of whole adapters.

`fedavg-full` is FedAvg (backprop, McMahan et al.) or, with a forward-only method, FwdLLM-style
federated forward gradients without slicing; `zo-seed` is federated ZO-SGD (FedMeZO) whose devices
upload one scalar per step and query instead of tensors (FedKSeed, DeComFL). A device whose memory
budget cannot hold the state of every tensor sits the round out.
"""

from __future__ import annotations

from coordinator.planners.base import Assignment, RoundPlanner, stable_order
from edge_runtime.protocol import pb


class FedAvgFull(RoundPlanner):
    name = "fedavg-full"
    summary = "every device trains every tensor"
    default_method = "fo-adam"

    def assign(self, round_, devices, slices, capacity):
        plan = Assignment()
        need = sum(s.nbytes for s in slices)
        for device in stable_order(devices):
            cap = capacity[device.id]
            if not cap.usable:
                plan.excluded[device.id] = cap.reason
            elif cap.trainable_bytes < need:
                plan.excluded[device.id] = (
                    f"training every tensor needs state for {need / 1e6:.1f} MB of "
                    f"adapters, its budget holds {cap.trainable_bytes / 1e6:.1f} MB"
                )
            else:
                plan.slices[device.id] = list(slices)
        if not plan.slices:
            plan.uncovered = [s.id for s in slices]
        return plan


class ZOSeed(FedAvgFull):
    name = "zo-seed"
    summary = "every device trains every tensor with ZO and uploads only scalars"
    default_method = "zo-sgd"
    upload = pb.Task.SEEDS
