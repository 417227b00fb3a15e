"""Metrics that training and evaluation share: ROC-AUC (meta RM held-out scores, ReaLMistake) and its ranks, and
bootstrap intervals of a mean and of a paired difference (comparing two models on the same items)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grm.seeding import numpy_rng


@dataclass(frozen=True)
class Estimate:
    """A mean with its percentile-bootstrap interval."""

    mean: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0 (for a difference: the two sides differ at the interval's level)."""
        return self.low > 0 or self.high < 0


def mean_interval(
    values: Sequence[float] | np.ndarray, *, n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95
) -> Estimate:
    """The mean of per-item ``values`` and its percentile-bootstrap interval (items drawn with replacement)."""
    x = np.asarray(values, dtype=float).reshape(-1)
    if not len(x) or np.isnan(x).any():
        raise ValueError(f"need one finite value per item, got {len(x)} values with {int(np.isnan(x).sum())} NaN")
    if n_bootstrap < 1 or not 0 < level < 1:
        raise ValueError(f"need n_bootstrap >= 1 and 0 < level < 1, got {n_bootstrap} and {level}")
    rng = numpy_rng(seed)
    means = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, 256):  # bounded memory for large item counts
        rows = min(256, n_bootstrap - start)
        means[start : start + rows] = x[rng.integers(0, len(x), size=(rows, len(x)))].mean(axis=1)
    tail = (1 - level) / 2
    return Estimate(float(x.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)))


def paired_difference(
    before: Sequence[float] | np.ndarray,
    after: Sequence[float] | np.ndarray,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """``after - before`` on the same items, with a paired bootstrap interval: the items are resampled together,
    so what both sides share (an item's difficulty) cancels and the interval is narrower than the two intervals
    of the sides would suggest."""
    a, b = np.asarray(before, dtype=float).reshape(-1), np.asarray(after, dtype=float).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"paired values need the same items on both sides, got {len(a)} and {len(b)}")
    return mean_interval(b - a, n_bootstrap=n_bootstrap, seed=seed, level=level)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``labels == 1`` (the Mann-Whitney statistic).

    Tied scores count one half. An item without a score (NaN) is tied with every other item, so it moves the
    area towards 0.5 instead of being dropped. NaN when only one class is present.
    """
    labels, scores = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    valid = ~np.isnan(scores)
    ranks = average_ranks(scores[valid])
    v_pos = pos[valid]
    vp, vn = int(v_pos.sum()), int((~v_pos).sum())
    wins = ranks[v_pos].sum() - vp * (vp + 1) / 2
    return float((wins + 0.5 * (n_pos * n_neg - vp * vn)) / (n_pos * n_neg))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]]) if len(xs) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(xs)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks
