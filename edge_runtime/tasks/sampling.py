"""Seeded subsets of a split: MeZO's k-shot training sets and evaluation subsets.

Both draw one permutation from numpy's legacy generator (`RandomState(seed).permutation`), the draw
behind MeZO's and LM-BFF's `np.random.seed(seed)` + shuffle/permutation, so a given file and seed
select the same examples as the papers' code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_runtime.errors import UserError
from edge_runtime.tasks.base import Example


def few_shot(examples: Sequence[Example], k: int, seed: int) -> list[Example]:
    """k examples per class for a classification task, k in total for a multiple-choice one.

    The kind is read off the examples (base.py's definition): a classification task gives every
    example the same candidates, its label words; a multiple-choice task gives each its own.
    Per class, this keeps the first k examples of each label along the permutation, as LM-BFF's
    generate_k_shot_data.py (MeZO's k-shot sets) does; the result stays in permutation order, so
    the classes come interleaved rather than in blocks.
    """
    if k < 1:
        raise UserError(f"few-shot k must be at least 1, got {k}")
    if not examples:
        raise UserError("few-shot sampling needs examples, got none")
    order = _permutation(len(examples), seed)
    label_words = examples[0].candidates
    if any(example.candidates != label_words for example in examples):
        if k > len(examples):
            raise UserError(f"few-shot k={k} needs {k} examples, but there are only {len(examples)}")
        return [examples[i] for i in order[:k]]

    taken = [0] * len(label_words)
    chosen: list[Example] = []
    for i in order:
        label = examples[i].label
        if taken[label] < k:
            taken[label] += 1
            chosen.append(examples[i])
            if len(chosen) == k * len(taken):
                return chosen
    short = ", ".join(
        f"label {label} ({label_words[label]!r}) has {count}" for label, count in enumerate(taken) if count < k
    )
    raise UserError(f"few-shot k={k} needs {k} examples per class, but {short}")


def subsample(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """All examples when n is None or covers them, else n of them drawn with the seed; in both
    cases in their original order (so a subset reads like the file it came from)."""
    if n is None or n >= len(examples):
        return list(examples)
    if n < 1:
        raise UserError(f"subsample size must be at least 1 (or None for all), got {n}")
    return [examples[i] for i in sorted(_permutation(len(examples), seed)[:n])]


def _permutation(size: int, seed: int) -> list[int]:
    if not 0 <= seed < 2**32:
        raise UserError(f"seed must be in [0, 2**32), got {seed}")
    order: list[int] = np.random.RandomState(seed).permutation(size).tolist()
    return order
