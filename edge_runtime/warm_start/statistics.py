"""Sufficient statistics of labelled features: what a linear head is solved from.

Per class, the example count and the feature sum; over all examples, the Gram matrix X^T X. They
add exactly across batches and across devices (FedNCM's class means, Fed3R's ridge regression), so
a federation's head is the head of its pooled data, though no feature leaves a device.

The examples are dealt alternately into two folds (`FOLDS`) that are kept apart: a head solved on
one fold and scored on the other tells how confident it may be on unseen inputs (its temperature),
which the fold it was solved on would overstate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

FOLDS = 2


class StatisticsError(ValueError):
    """Statistics that cannot come from real features (wrong shapes, negative counts, non-finite
    values, sums beyond what the counts allow): a sender's bug or a hostile upload."""


@dataclass
class FeatureStatistics:
    counts: np.ndarray  # [folds, classes]
    sums: np.ndarray  # [folds, classes, width]
    gram: np.ndarray  # [folds, width, width]

    @classmethod
    def empty(cls, classes: int, width: int) -> FeatureStatistics:
        return cls(np.zeros((FOLDS, classes)), np.zeros((FOLDS, classes, width)), np.zeros((FOLDS, width, width)))

    @property
    def classes(self) -> int:
        return self.counts.shape[1]

    @property
    def width(self) -> int:
        return self.sums.shape[2]

    @property
    def examples(self) -> int:
        return int(self.counts.sum())

    def add(self, features: np.ndarray, labels: np.ndarray) -> None:
        """Count a batch; example i of the whole stream goes to fold (running index) % FOLDS."""
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels)
        first = self.examples
        for fold in range(FOLDS):
            rows = (first + np.arange(len(labels))) % FOLDS == fold
            x, y = features[rows], labels[rows]
            np.add.at(self.counts[fold], y, 1)
            np.add.at(self.sums[fold], y, x)
            self.gram[fold] += x.T @ x

    def merged(self, other: FeatureStatistics) -> FeatureStatistics:
        if (self.classes, self.width) != (other.classes, other.width):
            raise StatisticsError(
                f"cannot add statistics of {other.classes} classes x {other.width} features "
                f"to {self.classes} x {self.width}"
            )
        return FeatureStatistics(self.counts + other.counts, self.sums + other.sums, self.gram + other.gram)

    def fold(self, index: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(counts, sums, gram) of one fold, or of all examples."""
        if index is None:
            return self.counts.sum(0), self.sums.sum(0), self.gram.sum(0)
        return self.counts[index], self.sums[index], self.gram[index]

    # On the wire: three float32 tensors, checked on arrival like any update.
    def as_tensors(self) -> dict[str, np.ndarray]:
        return {
            "counts": self.counts.astype(np.float32),
            "sums": self.sums.astype(np.float32),
            "gram": self.gram.astype(np.float32),
        }

    @classmethod
    def from_tensors(
        cls, tensors: Mapping[str, np.ndarray], classes: int, width: int, max_examples: int
    ) -> FeatureStatistics:
        expected = {"counts": (FOLDS, classes), "sums": (FOLDS, classes, width), "gram": (FOLDS, width, width)}
        if set(tensors) != set(expected):
            raise StatisticsError(
                f"statistics need the tensors {', '.join(expected)}, got {', '.join(sorted(tensors))}"
            )
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                raise StatisticsError(
                    f"statistics tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {shape}"
                )
            if not np.isfinite(tensors[name]).all():
                raise StatisticsError(f"statistics tensor {name!r} holds non-finite values")
        stats = cls(*(np.asarray(tensors[name], dtype=np.float64) for name in expected))
        stats.check(max_examples)
        return stats

    def check(self, max_examples: int) -> None:
        """Bounds every honest sender meets: whole non-negative counts no larger than its examples;
        per fold, a Gram whose diagonal is non-negative and whose trace bounds the class sums
        (sum_i |x_i|^2 >= |sum_i x_i|^2 / n by Cauchy-Schwarz)."""
        counts = self.counts
        if (counts < 0).any() or not np.allclose(counts, np.round(counts)):
            raise StatisticsError("statistics counts must be whole non-negative numbers")
        if counts.sum() > max_examples:
            raise StatisticsError(
                f"statistics count {int(counts.sum())} examples, more than the {max_examples} the device has"
            )
        for fold in range(FOLDS):
            gram = self.gram[fold]
            if (np.diag(gram) < -1e-3).any():
                raise StatisticsError("statistics Gram matrix has a negative diagonal")
            n = counts[fold]
            spread = sum(float(s @ s) / c for s, c in zip(self.sums[fold], n) if c > 0)
            if spread > np.trace(gram) * (1 + 1e-3) + 1e-3:
                raise StatisticsError("statistics class sums are larger than their Gram matrix allows")
            if (n == 0).any() and np.abs(self.sums[fold][n == 0]).max(initial=0) > 0:
                raise StatisticsError("statistics have a sum for a class with no examples")
