"""The task a device is given for a round: what to train (its slices, method and learning rate)
and how (batches, steps, seed, upload, deadline, data partition, the head's constants)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from coordinator.capacity import Capacity
from coordinator.config import CoordinatorConfig
from coordinator.ledger import Ledger
from coordinator.slices import Slice
from coordinator.state_store import GlobalState
from coordinator.strategy import Strategy
from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import adapter_message, method_message
from edge_runtime.spec import MethodSpec
from edge_runtime.tasks.partition import Partition


def derived_seed(*parts) -> int:
    """A seed that depends on nothing but `parts`, so a restarted coordinator draws the same ones."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


class TaskBuilder:
    def __init__(self, config: CoordinatorConfig, strategy: Strategy, ledger: Ledger) -> None:
        self.config, self.strategy, self.ledger = config, strategy, ledger

    def training(
        self,
        state: GlobalState,
        round_: int,
        device: str,
        pieces: Sequence[Slice],
        capacity: Capacity,
        deadline: float,
        method: MethodSpec,
        lr: float,
    ) -> pb.Task:
        c = self.config
        return pb.Task(
            task_id=f"{round_}:{device}",
            round=round_,
            state_version=state.version,
            adapter=adapter_message(self.strategy.shape.adapter),
            method=method_message(method),
            data=self._partition(device),
            slices=[s.id for s in pieces],
            tensors=[t for s in pieces for t in s.tensors],
            steps=min(c.local_steps, capacity.steps),
            batch_size=c.batch_size,
            lr=lr,
            seed=derived_seed(c.seed, "task", round_, device) % 2**63,
            upload=self.strategy.upload,
            deadline_unix=deadline,
            logit_scale=state.head_constants.get("logit_scale"),
            score_offsets=state.head_constants.get("score_offsets", []),
        )

    def statistics(self, state: GlobalState, device: str, deadline: float) -> pb.Task:
        """Round 0 of a warm start that needs the devices' data: forward passes over local examples."""
        task = self.training(
            state,
            0,
            device,
            [],
            Capacity(trainable_bytes=0, steps=0, step_seconds=0.0),
            deadline,
            self.strategy.method,
            self.config.lr,
        )
        task.work = pb.Task.STATISTICS
        task.statistics_examples = self.config.warm_start_examples
        return task

    def _partition(self, device: str) -> str:
        """The device's share of the task's training data, by its place in the registration order."""
        c = self.config
        if c.data != "partition":
            return ""
        order = [row.id for row in self.ledger.devices_by_registration()]
        return Partition(c.task, c.partitions, order.index(device) % c.partitions, c.dirichlet_alpha, c.seed).spec()
