"""Calibration of a causal LM's label-word scores (Zhao et al. 2021, "Calibrate before use").

A prompted LM prefers some label words whatever the input (SmolLM2 answers " great" to 99.5% of
SST-2 reviews under MeZO's prompt). Subtracting a per-candidate offset from the scores removes
that preference: either the scores of content-free inputs ("N/A", "") put through the same
prompt (contextual calibration), or the mean scores over the task's own unlabelled inputs
(centring, which needs no labels, only forward passes). The offsets are constants of the head:
they travel with the adapter and into an exported graph's manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge_runtime.warm_start.statistics import StatisticsError

# The inputs contextual calibration averages over, as the paper does.
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


@dataclass
class ScoreStatistics:
    """The sum of the candidates' log-probabilities over unlabelled inputs, and how many."""

    sums: np.ndarray  # [candidates]
    count: int = 0

    @classmethod
    def empty(cls, candidates: int) -> ScoreStatistics:
        return cls(np.zeros(candidates))

    def add(self, scores: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=np.float64)
        self.sums = self.sums + scores.sum(0)
        self.count += len(scores)

    def merged(self, other: ScoreStatistics) -> ScoreStatistics:
        if self.sums.shape != other.sums.shape:
            raise StatisticsError(f"cannot add score sums of {other.sums.shape[0]} candidates to {self.sums.shape[0]}")
        return ScoreStatistics(self.sums + other.sums, self.count + other.count)

    def as_tensors(self) -> dict[str, np.ndarray]:
        return {"score_sums": self.sums.astype(np.float32), "count": np.array([self.count], dtype=np.float32)}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, np.ndarray], candidates: int, max_examples: int) -> ScoreStatistics:
        if set(tensors) != {"score_sums", "count"}:
            raise StatisticsError(
                f"score statistics need the tensors score_sums, count; got {', '.join(sorted(tensors))}"
            )
        sums, count = np.asarray(tensors["score_sums"], dtype=np.float64), np.asarray(tensors["count"])
        if sums.shape != (candidates,) or count.shape != (1,):
            raise StatisticsError(
                f"score statistics have shapes {sums.shape} and {count.shape}, expected ({candidates},) and (1,)"
            )
        n = float(count[0])
        if not (np.isfinite(sums).all() and np.isfinite(n)) or n < 1 or n > max_examples or n != round(n):
            raise StatisticsError(
                f"score statistics count {n} is not a whole number of at most {max_examples} examples"
            )
        if (sums > 1e-3 * n).any():  # log-probabilities are never positive
            raise StatisticsError("score statistics sum positive log-probabilities")
        return cls(sums, int(n))


def score_offsets(scores: np.ndarray) -> np.ndarray:
    """The per-candidate offsets that remove the mean preference of `scores` ([inputs, candidates],
    or one mean row); shifted to sum to zero, since only their differences change a prediction."""
    mean = np.asarray(scores, dtype=np.float64).reshape(-1, np.shape(scores)[-1]).mean(0)
    return mean - mean.mean()
