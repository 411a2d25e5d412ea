"""The device agent's loop: register, then ask for work, fetch the state, train, upload; with
heartbeats beside it. `work_once` is one pass of that loop without sleeping, which is how the fleet
emulator drives many agents in one process.

A task is checked against the model before any work (its tensors must exist with the state's
shapes), so a coordinator that sends a task or an adapter for another model gets a refusal, not a
crash or a corrupted adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_runtime.agent.client import CallRejected, CoordinatorClient
from edge_runtime.agent.identity import Identity, load_identity, save_identity
from edge_runtime.local.work import LocalResult, update_header
from edge_runtime.protocol import PROTOCOL_VERSION, pb
from edge_runtime.protocol.specs import adapter_of
from edge_runtime.seeded.draws import FINGERPRINT
from edge_runtime.tasks import Example, load_split
from edge_runtime.tasks.partition import Partition


class Backend(Protocol):
    """A model a device trains on: PyTorch (local/torch_model.py) or ONNX Runtime."""

    def shapes(self) -> dict[str, tuple[int, ...]]: ...
    def load_state(self, state: dict[str, np.ndarray]) -> None: ...
    def train(self, task: pb.Task, examples: Sequence[Example]) -> LocalResult: ...
    def statistics(self, task: pb.Task, examples: Sequence[Example]) -> LocalResult: ...


# What became of a round's work when the agent was asked to stop during it (the round always ends
# first: an update is uploaded whole or not at all, and a lost answer is resent on the next start).
_AFTER_STOP = {
    "trained": "this round's update was uploaded and accepted before stopping",
    "rejected": "this round's update was uploaded and rejected by the coordinator",
    "refused": "this round's task was declined",
}


class TaskRefused(Exception):
    """This device cannot do the task; the reason goes back to the coordinator."""


@dataclass
class Prepared:
    kind: str  # task | refused | wait | done
    task: pb.Task | None = None
    result: LocalResult | None = None
    refusal: str = ""
    wait_s: float = 0.0


# The devices of an emulated fleet each ask for one part of the same split: it is drawn once per process
# (drawing it per device was half of a one-step device's time on SST-2).
@lru_cache(maxsize=4)
def _split(task: str, data_dir: str | None, first: Partition) -> list[list[Example]]:
    return first.split(load_split(task, "train", data_dir))


@dataclass
class DataSource:
    """Where a device's training examples come from: its own folder (or the packaged data), or the
    partition of the packaged data that the coordinator names in the task (emulated fleets)."""

    data_dir: str | None = None
    partition: Partition | None = None
    _cache: dict = field(default_factory=dict)

    def examples(self, task: pb.Task) -> list[Example]:
        dataset, partition = adapter_of(task).dataset, Partition.parse(task.data) if task.data else self.partition
        key = (dataset, partition)
        if key not in self._cache:
            self._cache[key] = (
                _split(dataset, self.data_dir, replace(partition, index=0))[partition.index]
                if partition
                else load_split(dataset, "train", self.data_dir)
            )
        return self._cache[key]

    def count(self, task_name: str | None) -> int:
        if task_name is None:
            return 0
        examples = load_split(task_name, "train", self.data_dir)
        return len(self.partition.select(examples)) if self.partition else len(examples)


class Agent:
    def __init__(
        self,
        client: CoordinatorClient,
        profile: pb.DeviceProfile,
        data: DataSource,
        backend_for: Callable[[pb.Task], Backend],
        *,
        join_secret: str = "",
        state_dir: Path | None = None,
        task_name: str | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.client, self.profile, self.data = client, profile, data
        self.backend_for, self.join_secret, self.state_dir, self.log = backend_for, join_secret, state_dir, log
        self.task_name = task_name
        self.state_version: int | None = None
        self.state: dict[str, np.ndarray] = {}
        self.heartbeat_s = 10.0
        self.rounds_done = 0

    def join(self, address: str = "in-process") -> str:
        known = load_identity(self.state_dir, address) if self.state_dir else None
        request = pb.RegisterRequest(
            protocol_version=PROTOCOL_VERSION,
            join_secret=self.join_secret,
            profile=self.profile,
            examples=self.data.count(self.task_name),
            direction_fingerprint=FINGERPRINT,
            device_id=known.device_id if known else "",
            token=known.token if known else "",
        )
        reply = self.client.register(request)
        self.client.device_id, self.client.token = reply.device_id, reply.token
        self.heartbeat_s = reply.heartbeat_interval_s or self.heartbeat_s
        if self.state_dir:
            save_identity(self.state_dir, Identity(address, reply.device_id, reply.token))
        return reply.device_id

    def prepare(self) -> Prepared:
        """Ask for work and do it, sending nothing back yet (the emulator delivers in virtual-time order)."""
        reply = self.client.get_task()
        kind = reply.WhichOneof("reply")
        if kind != "task":
            return Prepared(kind, wait_s=reply.wait.retry_after_s if kind == "wait" else 0.0)
        task = reply.task
        try:
            backend = self._prepare(task)
            if task.work == pb.Task.STATISTICS:
                return Prepared("task", task, backend.statistics(task, self.data.examples(task)))
            result = backend.train(task, self.data.examples(task))
        except TaskRefused as refusal:
            return Prepared("refused", task, refusal=str(refusal))
        if result.steps == 0:
            return Prepared("refused", task, result, refusal=result.stopped or "no step done")
        return Prepared("task", task, result)

    def deliver(self, prepared: Prepared) -> str:
        """Send a prepared task's outcome: 'trained' | 'refused' | 'rejected'."""
        task, result = prepared.task, prepared.result
        if prepared.kind == "refused":
            self.client.submit(pb.UpdateHeader(task_id=task.task_id, round=task.round, refused=prepared.refusal), {})
            self.log(f"agent: declined round {task.round}: {prepared.refusal}")
            return "refused"
        statistics = task.work == pb.Task.STATISTICS
        answer = self.client.submit(
            update_header(task, result), result.deltas if statistics or task.upload == pb.Task.DENSE else {}
        )
        if not answer.accepted:
            self.log(f"agent: round {task.round} update rejected: {answer.reason}")
            return "rejected"
        self.rounds_done += 1
        if statistics:
            return "trained"
        self.client.report_metrics(
            pb.MetricsReport(
                round=task.round,
                values={
                    "loss_before": result.loss_before,
                    "loss_after": result.loss_after,
                    "steps": result.steps,
                    "train_seconds": result.seconds,
                },
            )
        )
        return "trained"

    def work_once(self) -> tuple[str, float]:
        """One pass of the loop: ('trained' | 'refused' | 'rejected' | 'wait' | 'done', seconds to wait)."""
        prepared = self.prepare()
        if prepared.kind in ("wait", "done"):
            return prepared.kind, prepared.wait_s
        return self.deliver(prepared), 0.0

    def _prepare(self, task: pb.Task) -> Backend:
        backend = self.backend_for(task)
        shapes = backend.shapes()
        unknown = [name for name in task.tensors if name not in shapes]
        if unknown or not (task.tensors or task.work == pb.Task.STATISTICS):
            raise TaskRefused(f"the task names tensors this model does not have: {unknown[:3]}")
        if self.state_version != task.state_version:
            version, state = self.client.fetch_state()
            if version != task.state_version:
                raise TaskRefused(
                    f"the coordinator sent state version {version} for a task on version {task.state_version}"
                )
            mismatched = [n for n, v in state.items() if n not in shapes or tuple(v.shape) != shapes[n]]
            if mismatched or set(state) != set(shapes):
                raise TaskRefused(
                    f"the coordinator's adapter does not fit this model ({mismatched[:3] or 'other tensors'})"
                )
            self.state, self.state_version = state, version
        backend.load_state(self.state)
        return backend

    def run(self, stop: threading.Event) -> None:
        """Work until the coordinator says all rounds are done (or `stop` is set)."""
        beating = threading.Thread(target=self._beat, args=(stop,), name="heartbeat", daemon=True)
        beating.start()
        while not stop.is_set():
            try:
                outcome, wait = self.work_once()
            except CallRejected as error:
                if error.code.name != "UNAUTHENTICATED":
                    raise
                self.log("agent: the coordinator no longer knows this device; registering again")
                self.join(getattr(self.client, "address", "in-process"))
                continue
            if outcome == "done":
                self.log(f"agent: all rounds done; this device trained {self.rounds_done}")
                break
            if outcome == "trained":
                self.log(f"agent: round update accepted ({self.rounds_done} so far)")
            if stop.is_set():  # asked to stop (Ctrl-C, SIGTERM) while working: say what became of the work
                self.log(f"agent: stopped; {_AFTER_STOP.get(outcome, 'no task was in flight')}")
                break
            stop.wait(wait)
        stop.set()
        # A heartbeat still inside a gRPC call when the interpreter exits aborts the process.
        beating.join(timeout=self.heartbeat_s + 5)

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                self.client.heartbeat()
            except CallRejected:
                pass  # the main loop sees the same refusal on its next call and handles it
