"""Many emulated devices' forward passes through one shared base, as one batch.

Inside a lockstep run (fleet/lockstep.py) each device trains its own copy of the adapter
(`LockstepModel`) and its objective turns every loss or jvp into a request. `BatchedForward`
serves the requests of all devices at once: `torch.vmap` over the devices' stacked adapters and
batches runs the base's matmuls on every device's tokens together, so a GPU reads the base weights
once for many devices instead of once per device (the emulator's big win on a GPU; a CPU's cores
are already busy with one device's batch). Estimators and update rules are the ordinary ones: they
only ever call `objective.loss` and `objective.jvp`.

Requests are batched when they can be stacked: the same model, kind (loss or jvp), batch size and
head extras; the batches are padded to the longest (padding is masked, so scores agree with the
device's own pass to float rounding). A GPU pads every device's batch to one width, as padding costs
it little beside more passes; a CPU pays for every padded token, so there only widths within the
same `CPU_WIDTH_STEP` tokens go together. A group is cut into chunks of at
most `max_devices` whose estimated activations fit the free memory; a chunk that still runs out of
GPU memory is halved and retried.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from edge_runtime.fleet.accounting import predicted_activations
from edge_runtime.fleet.lockstep import Lockstep
from edge_runtime.heads.base import Batch
from edge_runtime.local.torch_model import TorchModel, copies_per_pass, train_adapter
from edge_runtime.local.work import LocalResult, head_constants
from edge_runtime.models.masks import always_build_masks
from edge_runtime.objective import Objective, Step, weighted_mean, weighted_parts
from edge_runtime.protocol import pb
from edge_runtime.tasks import Example

CPU_WIDTH_STEP = 16
Reply = tuple[torch.Tensor, torch.Tensor | None]  # (loss, directional derivative for a jvp)


@dataclass
class ForwardRequest:
    objective: LockstepObjective
    adapter: dict[str, torch.Tensor]  # the device's whole adapter as it is now (perturbed, for ZO)
    batch: Batch
    tangents: dict[str, torch.Tensor] | None = None  # a jvp request when set (the trained tensors')

    @property
    def width(self) -> int:
        return int(self.batch.inputs["input_ids"].shape[-1])

    def signature(self, width_step: int | None) -> tuple:
        """Requests of one signature can be stacked into one batch."""
        extras = tuple((k, tuple(v.shape)) for k, v in sorted(self.batch.extras.items()))
        width = math.ceil(self.width / width_step) if width_step else None
        return (
            id(self.objective.module),
            self.tangents is not None,
            tuple(self.batch.labels.shape),
            extras,
            tuple(sorted(self.batch.inputs)),
            width,
        )


@dataclass
class LockstepObjective(Objective):
    """A device's objective inside a lockstep run: the loss of `adapter` (the device's whole adapter,
    of which `params` are the trained tensors) on the shared module, served in a batch with the other
    devices' (or computed alone, `solo`, for a step whose memory is being measured)."""

    adapter: dict[str, torch.Tensor] = field(default_factory=dict)
    activation_bytes: int = 0  # the memory model's activations for one pass (chunks fit free memory)
    solo: bool = False

    def loss(self, batch: Step) -> torch.Tensor:
        return weighted_mean(lambda part: self._request(part, self.adapter, None)[0], batch)

    def jvp(
        self, batch: Step, primals: Mapping[str, torch.Tensor], tangents: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        adapter = {**self.adapter, **primals}
        replies = [(self._request(part, adapter, dict(tangents)), weight) for part, weight in weighted_parts(batch)]
        return sum(r[0] * w for r, w in replies), sum(r[1] * w for r, w in replies)

    def functional_loss(self, params: Mapping[str, torch.Tensor], batch: Step) -> torch.Tensor:
        # The rest of the device's adapter, not the shared module's, stands beside the given tensors.
        return super().functional_loss({**self.adapter, **params}, batch)

    def losses_at(self, points: Mapping[str, torch.Tensor], batch: Step) -> torch.Tensor:
        if self.solo:  # as the device itself would run them: its copies in one vmapped pass
            return super().losses_at(points, batch)
        adapters = [{**self.adapter, **point} for point in _unstacked(points)]
        return torch.stack([loss for loss, _ in self._requests_at(batch, adapters, [None] * len(adapters))])

    def jvps_at(
        self, batch: Step, primals: Mapping[str, torch.Tensor], tangents: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.solo:
            return super().jvps_at(batch, primals, tangents)
        split = _unstacked(tangents)
        replies = self._requests_at(batch, [{**self.adapter, **primals}] * len(split), split)
        return torch.stack([r[0] for r in replies]), torch.stack([r[1] for r in replies])

    def _requests_at(
        self, batch: Step, adapters: list[dict[str, torch.Tensor]], tangents: list[dict[str, torch.Tensor] | None]
    ) -> list[Reply]:
        """One request per point and micro-batch, all waited on together, so a device's copies go
        through the shared base in one batch with every other device's; each point's replies come
        back as the example-weighted mean over its micro-batches."""
        parts = weighted_parts(batch)
        requests = [
            ForwardRequest(self, adapter, part, tangent)
            for adapter, tangent in zip(adapters, tangents, strict=True)
            for part, _ in parts
        ]
        replies = Lockstep.active().request_all(requests)
        weights = [weight for _, weight in parts]
        combined = []
        for start in range(0, len(replies), len(parts)):
            mine = list(zip(replies[start : start + len(parts)], weights))
            loss = sum(reply[0] * w for reply, w in mine)
            derivative = None if mine[0][0][1] is None else sum(reply[1] * w for reply, w in mine)
            combined.append((loss, derivative))
        return combined

    def _request(
        self, batch: Batch, adapter: dict[str, torch.Tensor], tangents: dict[str, torch.Tensor] | None
    ) -> Reply:
        request = ForwardRequest(self, adapter, batch, tangents)
        return _alone(request) if self.solo else Lockstep.active().request(request)

    def backward(self, batch: Step) -> float:
        raise TypeError("backprop does not run in lockstep: only forward-only methods are batched")


class LockstepModel:
    """One emulated device's view of the shared model inside a lockstep run: its own copy of the
    adapter, trained through a `LockstepObjective`. The shared module is never written to."""

    def __init__(self, shared: TorchModel) -> None:
        self.shared = shared
        self.params: dict[str, torch.Tensor] = {}
        self.micro_batch: int | None = None
        self.perturbations_per_pass: int | None = None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return self.shared.shapes()

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.params = {
            name: torch.tensor(np.asarray(value), device=self.shared.device) for name, value in state.items()
        }

    def train(self, task: pb.Task, examples: Sequence[Example], measure_first_step: bool = False) -> LocalResult:
        # A step whose memory is measured runs alone: the tracker sees this device's pass only.
        activations = predicted_activations(task, self.micro_batch or task.batch_size)
        self.shared.head.load_constants(head_constants(task))
        per_pass = self.copies_per_pass(task)
        return train_adapter(
            task,
            examples,
            self.params,
            self.shared.device,
            measure_first_step,
            lambda params: LockstepObjective(
                self.shared.module,
                self.shared.head,
                params=params,
                micro_batch=self.micro_batch,
                perturbations_per_pass=per_pass,
                adapter=self.params,
                activation_bytes=activations,
                solo=measure_first_step,
            ),
        )

    def copies_per_pass(self, task: pb.Task) -> int:
        return copies_per_pass(task, self.shared.device, self.micro_batch, self.perturbations_per_pass)


def _unstacked(stacked: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Tensors stacked along a leading axis, as one dict per index."""
    count = next(iter(stacked.values())).shape[0]
    return [{name: t[i] for name, t in stacked.items()} for i in range(count)]


@dataclass
class BatchStats:
    passes: int = 0  # batched calls made
    device_passes: int = 0  # device passes they served

    @property
    def devices_per_pass(self) -> float:
        return self.device_passes / self.passes if self.passes else 0.0


class BatchedForward:
    """Serves a lockstep's requests: `__call__(requests)` -> one (loss, derivative) per request.
    `width_step`: only batches whose widths round up to the same multiple go together (None: any)."""

    def __init__(
        self, max_devices: int, free_bytes: Callable[[], int], width_step: int | None = CPU_WIDTH_STEP
    ) -> None:
        self.max_devices, self.free_bytes, self.width_step = max_devices, free_bytes, width_step
        self.stats = BatchStats()
        self.unbatchable: str | None = None  # why vmap could not run this model, once it failed

    def __call__(self, requests: list[ForwardRequest]) -> list[Reply]:
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.signature(self.width_step), []).append(index)
        replies: list[Reply | None] = [None] * len(requests)
        for indices in groups.values():
            for chunk in self._chunks(indices, requests):
                for index, reply in zip(chunk, self._serve([requests[i] for i in chunk]), strict=True):
                    replies[index] = reply
        return replies

    def _chunks(self, indices: list[int], requests: list[ForwardRequest]) -> list[list[int]]:
        budget, chunks, used = self.free_bytes(), [[]], 0
        for index in indices:
            need = requests[index].objective.activation_bytes
            if chunks[-1] and (len(chunks[-1]) >= self.max_devices or used + need > budget):
                chunks.append([])
                used = 0
            chunks[-1].append(index)
            used += need
        return chunks

    def _serve(self, chunk: list[ForwardRequest]) -> list[Reply]:
        if len(chunk) == 1 or self.unbatchable:
            self.stats.passes += len(chunk)
            self.stats.device_passes += len(chunk)
            return [_alone(r) for r in chunk]
        try:
            replies = _vmapped(chunk)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            half = len(chunk) // 2
            return self._serve(chunk[:half]) + self._serve(chunk[half:])
        except (RuntimeError, NotImplementedError) as error:
            # An op without a batching rule, or one that branches on tensor values: correct results
            # matter more than speed, so every pass of this run goes alone from here on.
            self.unbatchable = str(error).splitlines()[0]
            warnings.warn(
                f"devices' forward passes cannot be batched for this model ({self.unbatchable}); "
                "each device's pass runs alone",
                RuntimeWarning,
                stacklevel=2,
            )
            return self._serve(chunk)
        self.stats.passes += 1
        self.stats.device_passes += len(chunk)
        return replies


def _alone(request: ForwardRequest) -> Reply:
    objective = request.objective
    if request.tangents is None:
        with torch.no_grad():
            return objective.functional_loss(request.adapter, request.batch), None
    frozen = {n: t for n, t in request.adapter.items() if n not in request.tangents}
    trained = {n: request.adapter[n] for n in request.tangents}
    return torch.func.jvp(
        lambda p: objective.functional_loss({**frozen, **p}, request.batch), (trained,), (request.tangents,)
    )


def _vmapped(chunk: list[ForwardRequest]) -> list[Reply]:
    objective = chunk[0].objective
    width = max(r.width for r in chunk)
    batches = [objective.head.pad(r.batch, width) for r in chunk]
    inputs = {k: torch.stack([b.inputs[k] for b in batches]) for k in batches[0].inputs}
    labels = torch.stack([b.labels for b in batches])
    # Extras every device shares (candidate ids, candidate counts read as Python ints) stay unbatched.
    shared = {k: v for k, v in batches[0].extras.items() if all(torch.equal(v, b.extras[k]) for b in batches)}
    extras = {k: torch.stack([b.extras[k] for b in batches]) for k in batches[0].extras if k not in shared}
    adapters = {n: torch.stack([r.adapter[n].detach() for r in chunk]) for n in chunk[0].adapter}

    def loss(adapter, inputs, labels, extras):
        return objective.functional_loss(adapter, Batch(inputs, labels, {**shared, **extras}))

    with always_build_masks():
        if chunk[0].tangents is None:
            with torch.no_grad():
                losses = torch.vmap(loss)(adapters, inputs, labels, extras)
            return [(value, None) for value in losses]
        # Devices train different tensors (Spry's slices): a zero tangent leaves the others out.
        tangents = {
            n: torch.stack([r.tangents[n] if n in r.tangents else torch.zeros_like(r.adapter[n]) for r in chunk])
            for n in adapters
        }

        def jvp(adapter, tangent, inputs, labels, extras):
            return torch.func.jvp(lambda a: loss(a, inputs, labels, extras), (adapter,), (tangent,))

        losses, derivatives = torch.vmap(jvp)(adapters, tangents, inputs, labels, extras)
    return list(zip(losses, derivatives))
