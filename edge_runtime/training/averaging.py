"""Tail averaging (Polyak-Ruppert): the mean of the trained tensors over a run's last steps.

A ZO step moves every trained coordinate along a random direction, so the iterate carries noise
that a decaying rate only partly takes out: directions the loss curves slowly in keep what they
gathered before the rate fell. The mean of the iterates over the tail of the run averages that noise
away at the cost of one copy of the trained tensors; the run then saves and scores the mean.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

PREFIX = "tail_average."
COUNT = PREFIX + "count"


@contextmanager
def swapped_in(params: Mapping[str, torch.nn.Parameter], tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    """The parameters hold `tensors` inside the block and their own values again after it; storage is
    swapped, not copied, so scoring another set of values costs no memory."""

    def swap() -> None:
        for n, p in params.items():
            p.data, tensors[n] = tensors[n], p.data

    swap()
    try:
        yield
    finally:
        swap()


def first_averaged_step(steps: int, fraction: float) -> int:
    """The number of steps done after which iterates enter the mean: the last `fraction` of the run."""
    return steps - max(round(fraction * steps), 1)


class TailAverage:
    """The running mean of `params` over the iterates after step `start` (steps done, not indices)."""

    def __init__(self, params: Mapping[str, torch.nn.Parameter], start: int) -> None:
        self.params, self.start = params, start
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def update(self, steps_done: int) -> None:
        """Fold in the iterate after `steps_done` steps, once past `start`."""
        if steps_done <= self.start:
            return
        self.count += 1
        if self.count == 1:
            self.mean = {n: p.detach().clone() for n, p in self.params.items()}
            return
        for n, p in self.params.items():
            self.mean[n].lerp_(p.detach(), 1 / self.count)  # in place: no second copy

    def swapped_in(self):
        """The parameters hold the mean inside the block and the iterate again after it."""
        return swapped_in(self.params, self.mean)

    @torch.no_grad()
    def load_into_params(self) -> None:
        """End of the run: the parameters become the mean for good."""
        for n, p in self.params.items():
            p.copy_(self.mean[n])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The mean, keyed `tail_average.<parameter name>`, and how many iterates it holds (for a checkpoint,
        beside the method's own state)."""
        return {COUNT: torch.tensor(self.count), **{PREFIX + n: t for n, t in self.mean.items()}}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copies of what state_dict saved; a checkpoint without a mean starts none."""
        self.count = int(state.get(COUNT, torch.tensor(0)))
        self.mean = {
            n: state[PREFIX + n].to(p.device, copy=True) for n, p in self.params.items() if PREFIX + n in state
        }
