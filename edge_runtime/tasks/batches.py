"""Which examples a run trains and evaluates on, and in which order."""

from __future__ import annotations

import random
from collections.abc import Sequence

from edge_runtime.tasks import Example, TaskSpec, few_shot, load_split, subsample


def training_examples(spec: TaskSpec, split: str, k_shot: int | None, seed: int, data_dir) -> list[Example]:
    examples = load_split(spec.name, split, data_dir)
    return few_shot(examples, k_shot, seed) if k_shot else examples


def evaluation_examples(spec: TaskSpec, n: int | None, seed: int, data_dir) -> list[Example]:
    return subsample(load_split(spec.name, "eval", data_dir), n, seed)


class BatchSampler:
    """Batch `step` of an endless run of seeded epoch permutations.

    A batch is a pure function of (seed, step), so a resumed run sees the batches it would have.
    """

    def __init__(self, examples: Sequence[Example], batch_size: int, seed: int) -> None:
        self.examples, self.batch_size, self.seed = examples, batch_size, seed
        self._epochs: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._epochs:
            order = list(range(len(self.examples)))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            self._epochs = {epoch: order}  # one epoch at a time: steps only move forward
        return self._epochs[epoch]

    def batch(self, step: int) -> list[Example]:
        n = len(self.examples)
        start = step * self.batch_size
        return [self.examples[self._order(i // n)[i % n]] for i in range(start, start + self.batch_size)]
