"""A linear head on frozen features, solved in closed form from `FeatureStatistics`.

Two solvers (measured on SST-2 dev with MiniLM's mean-pooled embeddings, `edgetune bench
warm-start`): class centroids (nearest class mean, FedNCM), robust from a few dozen examples; and
ridge regression onto +-1 class targets (Fed3R), better from a few thousand. Either gives the
direction of the head; its scale (the softmax temperature) decides the loss that training starts
from, and the fold the head was solved on overstates how well it separates unseen inputs. So the
temperature is cross-fitted: the head solved on one fold is scored on the other fold's statistics
(a Gaussian model of its logits, with the mean and covariance those statistics give exactly), and
the temperature with the least expected cross-entropy is kept.

A multiple-choice task scores (prompt, candidate) pairs with one logit: its classes are "wrong
candidate" (0) and "right candidate" (1), and its head is their difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_runtime.warm_start.statistics import FOLDS, FeatureStatistics, StatisticsError

# Ridge's penalty relative to the mean eigenvalue of the centred Gram matrix; 1.0 was the best of
# 0.01, 0.1 and 1.0 at every training-set size measured (32 to 2,048 SST-2 examples).
RIDGE_LAMBDA = 1.0
_TEMPERATURES = np.logspace(-2, 3, 101)
_SAMPLES = 2048


@dataclass(frozen=True)
class LinearHead:
    """logits = temperature * (weight @ features + bias), with the rows of `weight` of unit norm
    on average: the scale of the logits is the temperature alone, whatever the solver (ridge's
    weights are large where centroids are about unit length)."""

    weight: np.ndarray  # [outputs, width]
    bias: np.ndarray  # [outputs]
    temperature: float
    solver: str


Solver = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _centroids(counts: np.ndarray, sums: np.ndarray, gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest class mean as a linear map: argmin_c |x - m_c|^2 = argmax_c m_c.x - |m_c|^2 / 2."""
    means = sums / counts[:, None]
    return means, -0.5 * (means * means).sum(1)


def _ridge(counts: np.ndarray, sums: np.ndarray, gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = counts.sum()
    targets = 2 * np.eye(len(counts)) - 1  # class c -> +1 at c, -1 elsewhere
    mean = sums.sum(0) / n
    mean_target = counts @ targets / n
    centred_gram = gram - n * np.outer(mean, mean)
    centred_xy = sums.T @ targets - n * np.outer(mean, mean_target)
    width = gram.shape[0]
    penalty = RIDGE_LAMBDA * max(np.trace(centred_gram), 1e-12) / width
    weight = np.linalg.solve(centred_gram + penalty * np.eye(width), centred_xy).T
    return weight, mean_target - weight @ mean


HEAD_SOLVERS: dict[str, Solver] = {"centroids": _centroids, "ridge": _ridge}
# What an encoder's head may start from: nothing, label descriptions, or a solver's fit.
ENCODER_WARM_STARTS = ("none", "zero-shot", *HEAD_SOLVERS)
# Centroids were the better head up to 512 SST-2 examples (0.764 vs ridge 0.759 dev accuracy), ridge
# from 2,048 (0.788 vs 0.779): `edgetune bench warm-start`.
RIDGE_FROM_EXAMPLES = 1024
# all-MiniLM-L6-v2 was trained on cosine similarities scaled by 20 (sentence-transformers'
# MultipleNegativesRankingLoss): the scale of a zero-shot head, which has no labels to fit one.
ZERO_SHOT_TEMPERATURE = 20.0
# The logit scale multiplies every gradient and every ZO difference, so a head that separates
# nothing (cross-fitted to a near-zero temperature) would freeze training: MiniLM's centroid head on
# COPA got 3.4e-4, and 800 backprop steps then moved the loss from 0.6931 to 0.6922 only. A head at
# this floor starts near chance, as the untrained head (scale 1) does, and trains like it.
MIN_TEMPERATURE = 1.0


def solver_for(requested: str, examples: int) -> str:
    """The solver "auto" stands for, given how many labelled examples the statistics count."""
    if requested != "auto":
        return requested
    return "ridge" if examples >= RIDGE_FROM_EXAMPLES else "centroids"


def fit_head(stats: FeatureStatistics, solver: str, *, candidates: int | None = None) -> LinearHead:
    """The head of `solver` on all examples, at the cross-fitted temperature.

    `candidates`: for a multiple-choice task, how many candidates each example has (the head is
    then one logit); None for classification.
    """
    solve = HEAD_SOLVERS[solver]
    for fold in range(FOLDS):
        missing = [c for c, n in enumerate(stats.fold(fold)[0]) if n == 0]
        if missing:
            raise StatisticsError(
                f"a {solver} head needs examples of every class in both folds; class "
                f"{missing[0]} has none in fold {fold} (give it more labelled examples)"
            )
    expected_loss = np.zeros_like(_TEMPERATURES)
    for fold in range(FOLDS):
        weight, bias = _as_scores(*solve(*stats.fold(fold)), candidates)
        expected_loss += _expected_losses(weight, bias, *stats.fold((fold + 1) % FOLDS), candidates)
    temperature = float(_TEMPERATURES[int(np.argmin(expected_loss))])
    # No class prior beside the nearest mean: the training sample's label balance need not be the
    # test's (adding SST-2's cost 1-1.5 points of dev accuracy).
    weight, bias = _as_scores(*solve(*stats.fold()), candidates)
    norm = float(np.sqrt((weight * weight).sum(1).mean()))
    return LinearHead(weight / norm, bias / norm, max(temperature * norm, MIN_TEMPERATURE), solver)


def zero_shot_head(descriptions: np.ndarray, temperature: float) -> LinearHead:
    """Cosine similarity to each class's description embedding (unit-norm features), scaled."""
    weight = descriptions / np.linalg.norm(descriptions, axis=1, keepdims=True)
    return LinearHead(weight, np.zeros(len(weight)), temperature, "zero-shot")


def _as_scores(weight: np.ndarray, bias: np.ndarray, candidates: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A multiple-choice head scores a pair by how much more it looks right than wrong."""
    if candidates is None:
        return weight, bias
    return (weight[1] - weight[0])[None], (bias[1:] - bias[:1])


def _expected_losses(
    weight: np.ndarray, bias: np.ndarray, counts: np.ndarray, sums: np.ndarray, gram: np.ndarray, candidates: int | None
) -> np.ndarray:
    """Mean cross-entropy at every temperature of `_TEMPERATURES`, for examples whose features
    have these statistics, taking each class's features as Gaussian around its mean with the
    pooled within-class covariance. Fixed draws: the same statistics give the same temperature."""
    means = sums / counts[:, None]
    within = (gram - (means.T * counts) @ means) / counts.sum()
    spread = weight @ within @ weight.T
    root = np.linalg.cholesky(spread + 1e-9 * np.trace(spread) * np.eye(len(spread)) + 1e-12 * np.eye(len(spread)))
    draws = np.random.default_rng(0)
    centres = means @ weight.T + bias  # [classes, outputs]
    if candidates is None:
        logits = np.concatenate(
            [centres[c] + draws.standard_normal((_SAMPLES, len(weight))) @ root.T for c in range(len(counts))]
        )
        labels = np.repeat(np.arange(len(counts)), _SAMPLES)
        weights = np.repeat(counts / counts.sum(), _SAMPLES)
    else:
        # Column 0 is the right candidate's score, the others wrong candidates'.
        scale = float(root[0, 0])
        right = centres[1, 0] + scale * draws.standard_normal((_SAMPLES, 1))
        wrong = centres[0, 0] + scale * draws.standard_normal((_SAMPLES, candidates - 1))
        logits, labels, weights = np.concatenate([right, wrong], 1), np.zeros(_SAMPLES, dtype=int), np.ones(_SAMPLES)
    losses = []
    for temperature in _TEMPERATURES:
        scaled = temperature * logits
        top = scaled.max(1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(scaled - top).sum(1))
        losses.append(float(((log_norm - scaled[np.arange(len(labels)), labels]) * weights).sum() / weights.sum()))
    return np.array(losses)
