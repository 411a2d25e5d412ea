"""Forward-only warm starts: a trained head before the first gradient estimate.

Everything here is numpy (no torch): a device without PyTorch computes the same statistics, and the
coordinator solves a federation's head from what its devices sent.
"""

from edge_runtime.warm_start.calibration import ScoreStatistics, score_offsets
from edge_runtime.warm_start.linear_head import HEAD_SOLVERS, LinearHead, fit_head
from edge_runtime.warm_start.statistics import FOLDS, FeatureStatistics, StatisticsError

__all__ = [
    "FOLDS",
    "HEAD_SOLVERS",
    "FeatureStatistics",
    "LinearHead",
    "ScoreStatistics",
    "StatisticsError",
    "fit_head",
    "score_offsets",
]
