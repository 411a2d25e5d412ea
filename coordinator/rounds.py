"""The coordinator's round loop: opens rounds, hands out tasks, accepts updates, closes and merges
rounds. Transport-free: the gRPC service and the fleet emulator's in-process transport both drive
this one object. Its parts: the device registry (liveness, sampling), the strategy (configure a
round, aggregate a round), update intake (checks, resends), the merge (from the ledger), recovery,
and the run's files.

Durability rules, which the crash tests check: an update is acknowledged only after the ledger
committed it; a round is closed exactly when the transaction that records its checkpoint commits;
the state is a fold of the rounds' accepted updates over the initial adapter, so recovery
(coordinator/recovery.py) loads the newest undamaged checkpoint and re-merges any closed round
after it from the ledger.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from coordinator.aggregation import server_optimizer
from coordinator.config import CoordinatorConfig
from coordinator.faults import crash_point
from coordinator.intake import checked_blob, is_resend
from coordinator.ledger import Ledger, RoundRow, UpdateRow
from coordinator.method_rule import AUTO
from coordinator.open_round import OpenRound, RoundView
from coordinator.planners import DeviceInfo
from coordinator.recovery import recover
from coordinator.registry import DeviceRegistry
from coordinator.round_merge import MergeInputs, merge_into
from coordinator.run_files import RunFiles
from coordinator.slices import slice_tensors
from coordinator.state_lock import StateLock
from coordinator.state_store import GlobalState, StateStore
from coordinator.strategy import Strategy
from coordinator.task_builder import TaskBuilder, derived_seed
from coordinator.validation import RejectedUpdate
from coordinator.warm_start import HeadLayout, initial_head, plan_warm_start
from edge_runtime.errors import UserError
from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import method_of
from edge_runtime.tasks import get_task
from edge_runtime.tasks.templates import prompt_template


class ModelHost(Protocol):
    """What the coordinator needs from its copy of the model."""

    kind: str  # encoder | causal_lm

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each trainable tensor's shape by name, in registration order."""

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the trainable tensors by name, as numpy arrays."""

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy `state`'s tensors into the model; tensors it does not name keep their values."""

    def set_constants(self, constants: dict) -> None:
        """Set the head's warm-start constants (a GlobalState's head_constants)."""

    def evaluate_state(self) -> dict[str, float]:
        """Score the loaded state: eval_accuracy and eval_loss on the eval sample, train_loss and
        train_accuracy on the training probe."""

    def export(self, folder: str) -> None:
        """Write the loaded state to `folder` as a peft adapter folder."""

    # The warm start (coordinator/warm_start.py).
    def head_layout(self) -> HeadLayout:
        """The shapes of the statistics devices send for the warm start, and where a solved head goes."""

    def zero_shot_head(self) -> tuple[dict[str, np.ndarray], dict]:
        """An encoder's head solved from the class descriptions alone: its tensors by name, and its
        constants."""

    def content_free_offsets(self) -> list[float]:
        """A causal LM's calibration: the mean score of each class with content-free inputs in the prompt."""


class RoundKeeper:
    """The round loop over one state folder, which it locks against other coordinators and recovers from on
    construction. The gRPC service calls it from many threads: whatever reads or changes the open round
    holds `lock` (re-entrant)."""

    def __init__(
        self,
        config: CoordinatorConfig,
        host: ModelHost,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = print,
    ) -> None:
        self.config, self.host, self.clock, self.log = config, host, clock, log
        folder = Path(config.state_dir)
        self.state_lock = StateLock(folder)
        self.ledger = Ledger(folder / "ledger.sqlite")
        self.store = StateStore(folder / "checkpoints")
        self.files = RunFiles(folder)
        self.shapes = host.shapes()
        head_layout = host.head_layout()
        # The global state keeps every tensor; the rounds train the slices chosen here.
        self.slices = [
            s for s in slice_tensors(self.shapes) if config.train_head or head_layout.weight not in s.tensors
        ]
        self.strategy = Strategy(
            config.planner,
            config.method,
            config.lr,
            config.adapter_spec(),
            config.estimator,
            config.batch_size,
            config.local_steps,
            config.round_deadline_s,
            host.kind,
            server_optimizer(
                config.server_optimizer, config.server_lr, config.server_beta1, config.server_beta2, config.server_tau
            ),
        )
        template = prompt_template(get_task(config.task), config.prompt, config.label_words, config.calibration)
        self.warm_start = plan_warm_start(host.kind, config.warm_start, template.calibration)
        if not config.train_head and host.kind == "encoder" and self.warm_start.kind == "none":
            raise UserError(
                "train_head false keeps the warm start's head, but warm_start is none: the head would "
                "stay random; choose a warm start or train the head"
            )
        self.merge_inputs = MergeInputs(self.strategy, self.shapes, self.slices, self.warm_start, head_layout)
        self.tasks = TaskBuilder(config, self.strategy, self.ledger)
        self.lock = threading.RLock()
        self.devices = DeviceRegistry(self.ledger, clock, config.device_timeout_s)
        self.state = GlobalState(0, {})
        self.open: OpenRound | None = None
        self.finished = False
        self.told_done: set[str] = set()  # devices that asked for work after the last round and heard "done"
        self.waiting_note = ""
        self.recover()

    def close(self) -> None:
        """Let go of the state folder (the ledger, and the lock that keeps other coordinators out)."""
        self.ledger.close()
        self.state_lock.release()

    def recover(self) -> None:
        """Rebuild the state and the open round from the folder (coordinator/recovery.py), and the run's files
        that lag the ledger; construction calls it."""
        with self.lock:
            recovered = recover(
                self.ledger,
                self.store,
                self.merge_inputs,
                self._initial_state,
                self.clock() + self.config.round_deadline_s,
                self.log,
            )
            self.state, self.open = recovered.state, recovered.open
            self.finished = self.version >= self.config.rounds and self.open is None
            # The silence of an outage is the coordinator's, not the devices'.
            self.devices.trust_known()
            if recovered.closed_rounds or recovered.open:
                # Files derived from the ledger may lag it by the crash; rebuild what is missing.
                self.files.rewrite_rounds(self.ledger)
                if self.finished and not self.files.adapter.exists():
                    self._export()
                self.log(
                    f"coordinator: recovered at state version {self.version}, "
                    f"{recovered.closed_rounds} rounds closed"
                    + (f", round {self.open.row.round} open" if self.open else "")
                )

    def _initial_state(self, first_start: bool) -> GlobalState:
        """The adapter before any round: the model's own tensors and the warm start the coordinator
        computes alone. On a first start it is checkpoint 0 and round -1's metrics, the baseline
        every round is compared with."""
        state = GlobalState(0, self.host.state())
        head, state.head_constants = initial_head(self.warm_start, self.host)
        state.params.update(head)
        if first_start:
            file, sha256 = self.store.write(state)
            self.ledger.close_round_metrics(-1, {"round": -1, "state_version": 0, **self._evaluate(state)})
            self.ledger.record_checkpoint(0, -1, file, sha256)
        return state

    # The public read API
    @property
    def version(self) -> int:
        """How many rounds the state has merged."""
        return self.state.version

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The global adapter, every tensor by name: the keeper's own arrays, to read, not to change."""
        return self.state.params

    @property
    def head_constants(self) -> dict:
        """The head's warm-start constants in the global state."""
        return self.state.head_constants

    @property
    def open_round(self) -> RoundView | None:
        """A copy of what may be read of the open round, or None when none is open."""
        with self.lock:
            return self.open.view() if self.open else None

    def assigned_task(self, device_id: str) -> pb.Task | None:
        """A copy of the task `device_id` holds in the open round, if it holds one."""
        with self.lock:
            task = self.open.tasks.get(device_id) if self.open else None
            return pb.Task.FromString(task.SerializeToString()) if task is not None else None

    def round_metrics(self) -> list[dict]:
        """Every closed round's metrics, the initial adapter's first (round -1)."""
        return self.ledger.metrics()

    def adapter_bytes(self) -> int:
        """The global state's tensors, in bytes."""
        return sum(value.nbytes for value in self.params.values())

    # Devices
    def seen(self, device_id: str) -> None:
        """`device_id` was heard from now: it counts as online for one device timeout."""
        self.devices.seen(device_id)

    # Rounds
    def tick(self) -> None:
        """Close the open round if it is done (everyone answered; the deadline passed with a quorum; or one
        more deadline passed), then try to open the next. Called often: on every GetTask and update, and
        by whatever drives the rounds (the server's loop, the emulator)."""
        with self.lock:
            if self.open is not None:
                self._maybe_close()
            if self.open is None and not self.finished:
                self._maybe_open()

    def _maybe_open(self) -> None:
        round_ = self.version
        online = self.devices.online_count()
        if online < self.config.min_devices:
            self._note(f"waiting for devices: {online} online, {self.config.min_devices} needed")
            return
        devices = self.devices.online()
        if self.warm_start.needs_devices and round_ == 0:
            self._open_statistics_round(devices)
            return
        devices = self.devices.sample(
            devices, self.config.devices_per_round, derived_seed(self.config.seed, "sample", round_)
        )
        configured = self.strategy.configure_round(round_, devices, self.slices)
        plan = configured.assignment
        if not plan.slices:
            reasons = "; ".join(sorted(set(plan.excluded.values()))) or "no slices"
            self._note(f"no online device can train this round: {reasons}")
            return
        now = self.clock()
        deadline = now + self.config.round_deadline_s
        tasks = {
            device: self.tasks.training(
                self.state,
                round_,
                device,
                pieces,
                configured.capacity[device],
                deadline,
                configured.methods[device],
                configured.lrs[device],
            )
            for device, pieces in plan.slices.items()
        }
        row = RoundRow(
            round_,
            "open",
            now,
            deadline,
            None,
            self.version,
            {
                "slices": {d: [s.id for s in pieces] for d, pieces in plan.slices.items()},
                "excluded": plan.excluded,
                "uncovered": plan.uncovered,
            }
            | ({"methods": configured.reasons} if configured.reasons else {}),
        )
        self.ledger.open_round(row, {d: t.SerializeToString() for d, t in tasks.items()})
        crash_point("round-opened")
        self.open = OpenRound(row, tasks, {})
        self.waiting_note = ""
        self.log(
            f"coordinator: round {round_} open: {len(tasks)} devices, "
            f"{len(self.slices) - len(plan.uncovered)}/{len(self.slices)} slices"
            + (f", {len(plan.excluded)} devices sat out" if plan.excluded else "")
            + (f", methods: {_count_methods(tasks)}" if self.strategy.auto else "")
        )

    def _open_statistics_round(self, devices: list[DeviceInfo]) -> None:
        """Round 0 of a warm start that needs the devices' data: every online device sends statistics."""
        now = self.clock()
        deadline = now + self.config.round_deadline_s
        tasks = {d.id: self.tasks.statistics(self.state, d.id, deadline) for d in devices}
        row = RoundRow(
            0,
            "open",
            now,
            deadline,
            None,
            self.version,
            {"work": "statistics", "slices": {d: [] for d in tasks}, "excluded": {}, "uncovered": []},
        )
        self.ledger.open_round(row, {d: t.SerializeToString() for d, t in tasks.items()})
        crash_point("round-opened")
        self.open = OpenRound(row, tasks, {})
        self.waiting_note = ""
        self.log(f"coordinator: round 0 open: {len(tasks)} devices send the warm start's statistics")

    def _maybe_close(self) -> None:
        open_ = self.open
        now = self.clock()
        assigned = len(open_.tasks)
        submitted = sum(1 for s in open_.accounted.values() if s == "submitted")
        everyone = len(open_.accounted) == assigned
        quorum = submitted >= math.ceil(self.config.quorum * assigned)
        past_deadline = now >= open_.row.deadline_at
        # Without a quorum the round waits one more deadline for stragglers, then merges what came.
        if everyone or (past_deadline and quorum) or now >= open_.row.deadline_at + self.config.round_deadline_s:
            self._close()

    def _close(self) -> None:
        open_ = self.open
        round_ = open_.row.round
        summary = merge_into(self.state, self.ledger, round_, self.merge_inputs)
        crash_point("round-merged")
        file, sha256 = self.store.write(self.state)
        crash_point("checkpoint-renamed")
        metrics = {
            **summary,
            **self._evaluate(),
            "wall_s": self.clock() - open_.row.opened_at,
            "bytes_down": self.ledger.downloaded(round_),
            "planner": self.config.planner,
            "method": AUTO if self.strategy.auto else self.strategy.method.name,
        }
        if self.strategy.auto:
            metrics["methods"] = {
                device: method_of(task).name for device, task in open_.tasks.items() if task.work == pb.Task.TRAIN
            }
        self.ledger.close_round(round_, self.version, file, sha256, metrics)
        crash_point("round-closed")
        self.files.append_round(metrics)
        self.open = None
        self.log(_describe(metrics))
        if self.version >= self.config.rounds:
            self.finished = True
            self._export()

    def _export(self) -> None:
        self.files.export(self.host, self.state)
        self.log(f"coordinator: {self.config.rounds} rounds done; adapter written to {self.files.adapter}")

    def _evaluate(self, state: GlobalState | None = None) -> dict:
        state = state or self.state
        self.host.load_state(state.params)
        self.host.set_constants(state.head_constants)
        return self.host.evaluate_state()

    def _note(self, note: str) -> None:
        if note != self.waiting_note:
            self.waiting_note = note
            self.log(f"coordinator: {note}")

    # What devices ask
    def task_for(self, device_id: str) -> pb.GetTaskReply:
        """The reply to a device's GetTask: its task in the open round, Done once every round is, else Wait."""
        with self.lock:
            if self.finished:
                self.told_done.add(device_id)
                return pb.GetTaskReply(done=pb.Done(reason=f"all {self.config.rounds} rounds are done"))
            open_ = self.open
            if open_ is not None and device_id in open_.tasks and device_id not in open_.accounted:
                return pb.GetTaskReply(task=open_.tasks[device_id])
            reason = "no task for this device in the open round" if open_ else "no round is open"
            return pb.GetTaskReply(wait=pb.Wait(retry_after_s=self.retry_after_s, reason=reason))

    def everyone_told_done(self) -> bool:
        """Whether every device still online has heard that the run is over."""
        with self.lock:
            return all(device.id in self.told_done for device in self.devices.online())

    @property
    def retry_after_s(self) -> float:
        """How long a device without work waits before asking again."""
        return min(2.0, self.config.round_deadline_s / 10)

    def state_for_download(self, names: list[str]) -> tuple[int, dict[str, np.ndarray]]:
        """(state version, the named tensors, or all of them when `names` is empty): the keeper's own arrays.
        An unknown name is a RejectedUpdate."""
        with self.lock:
            unknown = [n for n in names if n not in self.params]
            if unknown:
                raise RejectedUpdate(f"unknown tensors {unknown[:3]}")
            return self.version, {n: self.params[n] for n in (names or self.params)}

    def record_device_metrics(self, device_id: str, round_: int, values: dict[str, float]) -> None:
        """Append a device's metrics for `round_` to the run's device metrics file, stamped with the clock."""
        with self.lock:
            self.files.append_device({"device": device_id, "round": round_, "at": self.clock(), **values})

    def count_download(self, nbytes: int) -> None:
        """Add `nbytes` of a state download to the open round's count in the ledger (the next round's when
        none is open)."""
        with self.lock:
            self.ledger.add_download(self.open.row.round if self.open else self.version, nbytes)

    def accept(self, device_id: str, header: pb.UpdateHeader, deltas: dict[str, np.ndarray], wire_bytes: int) -> None:
        """Store the update or raise RejectedUpdate (also written to the ledger)."""
        with self.lock:
            try:
                self._accept(device_id, header, deltas, wire_bytes)
            except RejectedUpdate as error:
                self.ledger.reject(header.round, device_id, str(error))
                raise
        self.tick()

    def _accept(self, device_id, header, deltas, wire_bytes) -> None:
        if is_resend(self.ledger, self.version, device_id, header, deltas):
            return  # the device lost our answer, not its update: acknowledge it again, store nothing
        open_ = self.open
        if open_ is None or header.round != open_.row.round:
            raise RejectedUpdate(
                f"round {header.round} is not open (the open round is "
                f"{open_.row.round if open_ else 'none'}); late updates are not merged"
            )
        task = open_.tasks.get(device_id)
        if task is None:
            raise RejectedUpdate(f"this device has no task in round {header.round}")
        if device_id in open_.accounted:
            raise RejectedUpdate(f"this device's update for round {header.round} was already received")
        if header.refused:
            self.ledger.set_assignment_status(header.round, device_id, "refused")
            open_.accounted[device_id] = "refused"
            self.log(f"coordinator: device {device_id[:8]} declined round {header.round}: {header.refused[:200]}")
            return
        blob = checked_blob(
            task,
            header,
            deltas,
            self.shapes,
            self.config.max_update_norm,
            self.warm_start,
            self.merge_inputs.head_layout,
        )
        self._store(header, device_id, task, blob, wire_bytes)

    def _store(
        self, header: pb.UpdateHeader, device_id: str, task: pb.Task, blob: bytes | None, wire_bytes: int
    ) -> None:
        if not self.ledger.accept_update(
            UpdateRow(header.round, device_id, task.task_id, header.SerializeToString(), blob, wire_bytes)
        ):
            raise RejectedUpdate(f"this device's update for round {header.round} was already accepted")
        crash_point("update-committed")
        self.open.accounted[device_id] = "submitted"


def _count_methods(tasks: dict[str, pb.Task]) -> str:
    counts = Counter(method_of(task).name for task in tasks.values())
    return ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()))


def _describe(m: dict) -> str:
    if m.get("work") == "statistics":
        return (
            f"round {m['round']}: warm start from {m['updates']}/{m['assigned']} devices' statistics: "
            f"{m['warm_start']}, train loss {m['train_loss']:.4f}, eval accuracy {m['eval_accuracy']:.3f}, "
            f"up {m['bytes_up'] / 1e3:.1f} KB, {m['wall_s']:.1f} s"
        )
    return (
        f"round {m['round']}: {m['updates']}/{m['assigned']} updates, slices {m['slices_trained']}/"
        f"{m['slices_total']}, train loss {m['train_loss']:.4f}, eval accuracy {m['eval_accuracy']:.3f}, "
        f"up {m['bytes_up'] / 1e3:.1f} KB, down {m['bytes_down'] / 1e3:.1f} KB, {m['wall_s']:.1f} s"
    )
