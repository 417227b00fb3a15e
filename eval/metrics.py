"""Metrics over judged items: votes of k sampled judgements, bootstrap confidence intervals (ROC-AUC, which
training shares, lives in :mod:`grm.metrics` and is re-exported here).

Voting@k for every k <= k_max comes from one run with k_max judgements per item: each draw picks k of them at
random (without replacement) and votes them with :func:`grm.voting.vote`, which breaks ties for the best
response at random (shuffle, then argmax), as SPCT does. Scores are averaged over draws.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from grm.metrics import average_ranks as average_ranks  # re-exported: eval's metrics, shared with training
from grm.metrics import roc_auc as roc_auc
from grm.seeding import numpy_rng, seeded_rng
from grm.types import Judgement
from grm.voting import Vote, vote


@dataclass
class Judged:
    """One judged item, kept small: its subset, ground truth, judgements (text dropped) and meta scores, with
    its id and its responses' lengths in characters (for the length diagnostic). A GRM's item also keeps its own
    vote (the Reward's: what an adaptive run is scored by), the judgements it drew (resamples included) and the
    tokens of the judgements it kept (None when the backend recorded none)."""

    subset: str
    truth: list[float]
    judgements: list[Judgement]
    meta: list[float] | None = None
    id: str = ""
    lengths: list[int] | None = None
    vote: Vote | None = None
    n_drawn: int | None = None
    n_tokens: int | None = None


def vote_values(
    judged: Sequence[Judged],
    value: Callable,
    k: int,
    *,
    draws: int,
    seed: int,
    meta: bool = False,
    k_meta: int | None = None,
    width: int = 1,
) -> np.ndarray:
    """Per-item ``value(vote, truth)`` of votes over ``k`` judgements drawn from each item's: shape (draws, items),
    or (draws, items, width) when ``value`` returns ``width`` > 1 numbers.

    With ``meta``, the items' meta scores guide the vote (the ``k_meta`` rated highest are voted; default half).
    Draw ``d`` uses the same random stream with or without ``meta``, so the two modes see the same subsets. A judge
    that sees part of an item per judgement (a pair, one response: :meth:`grm.judges.JudgeFormat.orders`) has
    ``units`` judgements per sample, sample-major; k samples are then drawn whole, every part of each.
    """
    units = [len({tuple(sorted(j.order)) for j in item.judgements if j.order is not None}) or 1 for item in judged]
    pools = {len(item.judgements) // m for item, m in zip(judged, units)}
    if len(pools) > 1 or k > min(pools, default=k):
        raise ValueError(f"cannot vote {k} samples per item: items hold {sorted(pools)} samples each")
    pool = pools.pop() if pools else k
    out = np.empty((draws, len(judged)) if width == 1 else (draws, len(judged), width))
    for d in range(draws):
        rng = seeded_rng(seed, k, d)  # tie-breaks
        if k < pool:  # k of the pool per item, at random, kept in sample order
            picks = np.sort(numpy_rng(seed, k, d).random((len(judged), pool)).argsort(axis=1)[:, :k])
            samples = picks.tolist()
        else:
            samples = [list(range(pool))] * len(judged)
        for i, (item, picked, m) in enumerate(zip(judged, samples, units)):
            row = [s * m + u for s in picked for u in range(m)]
            meta_scores = [item.meta[p] for p in row] if meta and item.meta is not None else None
            judgements = [item.judgements[p] for p in row]
            groups = [p % m for p in row]
            v = vote(judgements, len(item.truth), rng=rng, meta_scores=meta_scores, k_meta=k_meta, groups=groups)
            out[d, i] = value(v, item.truth)
    return out


def own_values(judged: Sequence[Judged], value: Callable, *, width: int = 1) -> np.ndarray:
    """Per-item ``value(vote, truth)`` of each item's own vote (as its Reward made it, over the judgements it
    drew): shape (items,), or (items, width)."""
    missing = [item.id for item in judged if item.vote is None]
    if missing:
        raise ValueError(f"items {missing[:3]} have no vote of their own (judged by a scalar reward function?)")
    return np.array([value(item.vote, item.truth) for item in judged], dtype=float).reshape(
        (len(judged),) if width == 1 else (len(judged), width)
    )


def mean_summary(summaries: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of several summaries (NaNs ignored; a key missing from some is averaged where present)."""
    collected: dict[str, list[float]] = defaultdict(list)
    for s in summaries:
        for key, v in s.items():
            collected[key].append(v)
    return {key: nanmean(vs) for key, vs in collected.items()}


def bootstrap_intervals(
    summaries: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    groups: Sequence[np.ndarray],
    *,
    units: np.ndarray | None = None,
    n: int = 1000,
    seed: int,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every score ``summaries(index, copies)`` returns, resampled with ``seed``.

    Each resample draws items with replacement within each group (subset), keeping the group sizes, so every
    subset and section stays defined. With ``units`` (one integer per item), whole units are drawn instead of
    items (a unit's items stay together, e.g. a pair judged in both orders) and ``copies`` numbers each drawn unit
    copy afresh, so that a unit drawn twice counts twice; without, ``copies`` numbers the drawn items.
    """
    if n < 1:
        return {}
    rng = numpy_rng(seed)
    members, starts, sizes, counts = _clusters([g for g in groups if len(g)], units)
    base = np.repeat(np.cumsum(counts) - counts, counts)  # each draw slot's group's first unit
    span = np.repeat(counts, counts)
    singles = bool((sizes == 1).all())
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(n):
        drawn = base + (rng.random(len(base)) * span).astype(int)
        if singles:
            index, copies = members[starts[drawn]], np.arange(len(drawn))
        else:
            index = members[ranges(starts[drawn], sizes[drawn])]
            copies = np.repeat(np.arange(len(drawn)), sizes[drawn])
        for key, v in summaries(index, copies).items():
            samples[key].append(v)
    tail = (1 - level) / 2
    intervals = {}
    for key, vs in samples.items():
        arr = np.asarray(vs, dtype=float)
        arr = arr[~np.isnan(arr)]
        if len(arr):
            intervals[key] = (float(np.quantile(arr, tail)), float(np.quantile(arr, 1 - tail)))
    return intervals


def ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The positions ``starts[i] .. starts[i] + sizes[i] - 1`` of every range in turn, as one array."""
    return np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(sizes.sum())


def _clusters(
    groups: Sequence[np.ndarray], units: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The groups' items ordered group by group and, within a group, unit by unit (first-seen order); each
    unit's start and size in that order; and each group's number of units. Without ``units``, every item is a
    unit of its own."""
    parts, sizes, counts = [], [], []
    for group in groups:
        if units is None:
            parts.append(group)
            sizes.append(np.ones(len(group), dtype=int))
        else:
            _, first, inverse, size = np.unique(
                units[group], return_index=True, return_inverse=True, return_counts=True
            )
            rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")  # unit codes in first-seen order
            parts.append(group[np.argsort(rank[inverse], kind="stable")])
            sizes.append(size[np.argsort(rank, kind="stable")])
        counts.append(len(sizes[-1]))
    size = np.concatenate(sizes) if sizes else np.array([], dtype=int)
    members = np.concatenate(parts) if parts else np.array([], dtype=int)
    return members, np.cumsum(size) - size, size, np.array(counts, dtype=int)


def nanmean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the values that are not NaN (any shape); NaN when there are none."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if len(arr) else float("nan")
