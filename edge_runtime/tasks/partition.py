"""Split a task's training examples among federated devices: IID or non-IID (Dirichlet).

The Dirichlet split is the one of the Spry and FedML papers: for each class, the shares of the
devices are drawn from Dir(alpha, ..., alpha) and that class's examples are dealt out by those
shares, so a small alpha gives each device a few dominant labels and alpha -> infinity tends to
IID. A partition is a pure function of (examples, parts, alpha, seed): a coordinator, an agent
and an emulator that name the same `Partition` get the same examples without sending any.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_runtime.errors import UserError
from edge_runtime.tasks.base import Example

# Draws are repeated until every device gets at least this many examples (FedML does the same).
MIN_EXAMPLES_PER_PART = 2
_MAX_DRAWS = 100


@dataclass(frozen=True)
class Partition:
    """Device `index` of `parts` in a split of `task`'s training data; alpha None = IID."""

    task: str
    parts: int
    index: int
    alpha: float | None = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.parts < 1 or not 0 <= self.index < self.parts:
            raise UserError(f"partition index must be in [0, {self.parts}), got {self.index}")
        if self.alpha is not None and not self.alpha > 0:
            raise UserError(f"Dirichlet alpha must be positive, got {self.alpha}")

    def spec(self) -> str:
        alpha = "iid" if self.alpha is None else repr(self.alpha)
        return f"{self.task}:{self.index}/{self.parts}:{alpha}:{self.seed}"

    @classmethod
    def parse(cls, spec: str) -> Partition:
        """'sst2:3/10:1.0:0' = task sst2, device 3 of 10, Dirichlet alpha 1.0, seed 0 ('iid' for IID)."""
        try:
            task, share, alpha, seed = spec.split(":")
            index, parts = share.split("/")
            return cls(task, int(parts), int(index), None if alpha == "iid" else float(alpha), int(seed))
        except ValueError:
            raise UserError(
                f"cannot read partition {spec!r}; write task:index/parts:alpha:seed, "
                "e.g. sst2:3/10:1.0:0 or sst2:3/10:iid:0"
            ) from None

    def select(self, examples: Sequence[Example]) -> list[Example]:
        return self.split(examples)[self.index]

    def split(self, examples: Sequence[Example]) -> list[list[Example]]:
        """Every part of the split this partition belongs to."""
        parts = split_indices([ex.label for ex in examples], self.parts, self.alpha, self.seed)
        return [[examples[i] for i in part] for part in parts]


def split_indices(labels: Sequence[int], parts: int, alpha: float | None, seed: int) -> list[list[int]]:
    """Indices of each part, each in ascending order; every index lands in exactly one part."""
    if len(labels) < parts * MIN_EXAMPLES_PER_PART:
        raise UserError(f"{len(labels)} examples cannot give {parts} devices {MIN_EXAMPLES_PER_PART} each")
    rng = np.random.default_rng(seed)
    if alpha is None:
        order = rng.permutation(len(labels))
        return [sorted(chunk.tolist()) for chunk in np.array_split(order, parts)]
    labels_array = np.asarray(labels)
    for _ in range(_MAX_DRAWS):
        split: list[list[int]] = [[] for _ in range(parts)]
        for label in np.unique(labels_array):
            members = rng.permutation(np.flatnonzero(labels_array == label))
            shares = rng.dirichlet(np.full(parts, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for part, chunk in zip(split, np.split(members, cuts)):
                part.extend(chunk.tolist())
        if min(len(part) for part in split) >= MIN_EXAMPLES_PER_PART:
            return [sorted(part) for part in split]
    raise UserError(
        f"Dirichlet alpha={alpha} left some of {parts} devices with fewer than "
        f"{MIN_EXAMPLES_PER_PART} examples in {_MAX_DRAWS} draws; use a larger alpha or fewer devices"
    )
