"""A round's two decisions, the way Flower's `Strategy` splits them: `configure_round` (each
device's capacity and method, then the planner's slices) and `aggregate_round` (each update's
deltas, replayed from seeds where the device sent only scalars, averaged, then the server
optimizer's step). Both are pure over their inputs; `RoundKeeper` (coordinator/rounds.py) owns the
state machine, the ledger and the durability around them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from coordinator.aggregation import ServerOptimizer, WeightedUpdate, average_updates
from coordinator.capacity import Capacity, RoundShape, device_capacity, prepare
from coordinator.method_rule import AUTO, candidate_shapes
from coordinator.method_rule import choose as choose_method
from coordinator.planners import PLANNERS, Assignment, DeviceInfo
from coordinator.replay import REPLAYABLE_METHODS, replay_task
from coordinator.slices import Slice
from edge_runtime.costs import time_to_target
from edge_runtime.errors import UserError
from edge_runtime.protocol import pb
from edge_runtime.spec import AdapterSpec, MethodSpec


@dataclass
class RoundPlan:
    """configure_round's decision: the planner's assignment and, for each device given slices, its method and
    learning rate (`capacity` covers every device considered)."""

    assignment: Assignment
    methods: dict[str, MethodSpec]  # device id -> the method it trains with
    lrs: dict[str, float]  # device id -> its learning rate
    capacity: dict[str, Capacity]  # device id -> its capacity under that method
    reasons: dict[str, str] = field(default_factory=dict)  # method auto: device id -> why that method


@dataclass(frozen=True)
class ReceivedUpdate:
    """One accepted update as aggregate_round takes it: dense deltas, or the scalars of a seeds upload that
    are replayed against `task`; `examples` weights it in the average."""

    device_id: str
    task: pb.Task
    examples: int
    deltas: Mapping[str, np.ndarray] | None  # None: a seeds upload, replayed from `scalars`
    scalars: Sequence[float] = ()


class Strategy:
    """A round's two decisions for one run's planner, method (or auto), learning rate and server optimizer:
    configure_round plans a round, aggregate_round merges it. Construction refuses a planner and method
    that cannot work together, and computes ahead the memory estimate every device's capacity shares."""

    def __init__(
        self,
        planner: str,
        method: str | None,
        lr: float,
        adapter: AdapterSpec,
        settings,
        batch_size: int,
        local_steps: int,
        deadline_s: float,
        model_kind: str,
        optimizer: ServerOptimizer,
    ) -> None:
        self.planner = PLANNERS[planner]()
        self.auto = method == AUTO
        if self.auto and self.planner.upload == pb.Task.SEEDS:
            raise UserError(
                f"method auto picks backprop where a device can afford it, whose update is dense; "
                f"planner {planner} uploads seeds: use spry or fedavg-full"
            )
        self.method = MethodSpec(self.planner.default_method if self.auto or not method else method, settings)
        if self.planner.upload == pb.Task.SEEDS and self.method.name not in REPLAYABLE_METHODS:
            raise UserError(
                f"planner {planner} uploads seeds, which replay only for "
                f"{', '.join(sorted(REPLAYABLE_METHODS))}; method {self.method.name} does not"
            )
        self.shape = RoundShape(adapter, self.method, batch_size, local_steps, deadline_s)
        prepare(self.shape)
        self.method_shapes = candidate_shapes(self.shape) if self.auto else {}
        self.lr, self.model_kind, self.optimizer = lr, model_kind, optimizer

    @property
    def method_label(self) -> str:
        """The method as the coordinator's log names it: the one method, or auto with its candidates."""
        return f"method auto (per device, among {', '.join(self.method_shapes)})" if self.auto else self.method.name

    @property
    def upload(self) -> int:
        """How the planner's devices upload: pb.Task.DENSE (tensors) or pb.Task.SEEDS (scalars, replayed from seeds)."""
        return self.planner.upload

    def configure_round(self, round_: int, devices: Sequence[DeviceInfo], slices: Sequence[Slice]) -> RoundPlan:
        """Who trains which slices with which method and learning rate this round. Under method auto a
        device trains at the rate its method's steps to the target were measured at (the one `lr`
        cannot suit Adam and ZO-SGD alike); `lr` where the measurements have none."""
        methods, capacity, reasons = {}, {}, {}
        smallest = min(s.nbytes for s in slices)
        for device in devices:
            if self.auto:
                chosen = choose_method(device.profile, self.method_shapes, smallest, self.model_kind)
                methods[device.id] = replace(self.method, name=chosen.method)
                capacity[device.id], reasons[device.id] = chosen.capacity, chosen.why
            else:
                methods[device.id], capacity[device.id] = self.method, device_capacity(device.profile, self.shape)
        assignment = self.planner.assign(round_, devices, slices, capacity)
        lrs = {d: self._lr(methods[d].name) for d in assignment.slices}
        return RoundPlan(
            assignment,
            {d: methods[d] for d in assignment.slices},
            lrs,
            capacity,
            {d: reasons[d] for d in assignment.slices if d in reasons},
        )

    def _lr(self, method: str) -> float:
        measured = time_to_target.learning_rate(method, self.model_kind) if self.auto else None
        return self.lr if measured is None else measured

    def aggregate_round(
        self, params: dict[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]], updates: Sequence[ReceivedUpdate]
    ) -> dict[str, np.ndarray]:
        """Move `params` by the round's updates (in place); returns the averaged update."""
        weighted = [
            WeightedUpdate(
                u.device_id,
                float(u.examples),
                u.deltas if u.deltas is not None else replay_task(u.task, u.scalars, shapes),
            )
            for u in updates
        ]
        mean = average_updates(weighted)
        self.optimizer.step(params, mean)
        return mean
