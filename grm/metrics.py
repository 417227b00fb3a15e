"""Metrics that training and evaluation share: ROC-AUC (meta RM held-out scores, ReaLMistake) and its ranks."""

from __future__ import annotations

import numpy as np


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
