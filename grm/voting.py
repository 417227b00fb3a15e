"""Turn k sampled judgements into one reward per response (SPCT voting), and decide when fewer will do.

Adaptive compute asks, after each round of samples, whether drawing the rest could still change the best
response. :func:`leader_is_safe` and :func:`kept_leader_is_safe` answer it exactly (worst case: every remaining
judgement as adverse as the score range allows); :func:`decision_risk` estimates the probability from the item's
own samples (see its docs for the estimator and its assumptions).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from grm.types import Judgement


@dataclass
class Vote:
    """Voted outcome: summed ``rewards``, their per-judgement ``mean``, the ``best`` index, the ``kept``
    judgement indices. All but ``kept`` are None when no judgement could be voted."""

    rewards: list[float] | None
    mean: list[float] | None
    best: int | None
    kept: list[int]


def argmax_random_tie(values: Sequence[float], rng: random.Random) -> int:
    """Index of the largest value; among equal maxima, a uniformly random one (shuffle, then argmax)."""
    idx = list(range(len(values)))
    rng.shuffle(idx)
    return max(idx, key=values.__getitem__)


def top_k_meta(meta_scores: Sequence[float], k_meta: int, groups: Sequence[int] | None = None) -> list[int]:
    """Indices (ascending) of the ``k_meta`` highest meta scores; equal scores keep the earlier sample. With
    ``groups`` (one label per judgement: a judge that sees part of an item per judgement, e.g. one pair, has a
    group per part, see :meth:`grm.judges.JudgeFormat.orders`), the ``k_meta`` highest of each group."""
    if k_meta < 1:
        raise ValueError(f"k_meta must be >= 1, got {k_meta}")
    labels = [0] * len(meta_scores) if groups is None else list(groups)
    if len(labels) != len(meta_scores):
        raise ValueError(f"got {len(labels)} group labels for {len(meta_scores)} meta scores")
    kept: list[int] = []
    for label in dict.fromkeys(labels):
        members = [i for i, g in enumerate(labels) if g == label]
        kept += sorted(members, key=lambda i: (-meta_scores[i], i))[:k_meta]
    return sorted(kept)


def vote(
    judgements: Sequence[Judgement],
    n: int,
    *,
    rng: random.Random,
    meta_scores: Sequence[float] | None = None,
    k_meta: int | None = None,
    groups: Sequence[int] | None = None,
) -> Vote:
    """Sum each response's scores over the valid judgements.

    With ``meta_scores`` only the ``k_meta`` judgements rated highest by the meta RM are considered (default
    half of them, at least one; per group with ``groups``, see :func:`top_k_meta`); invalid judgements among
    those are skipped, not replaced. A judgement that did not see a response (score None: a pairwise or
    one-at-a-time judge) adds nothing to it: ``mean[i]`` averages response i's scores over the judgements that saw
    it, and ``best`` is the highest mean (the highest sum when every judgement saw every response). An item with a
    response no valid judgement saw cannot be ranked: all None.
    """
    candidates: Sequence[int] = range(len(judgements))
    if meta_scores is not None:
        if len(meta_scores) != len(judgements):
            raise ValueError(f"got {len(meta_scores)} meta scores for {len(judgements)} judgements")
        per_group = len(judgements) // len(set(groups)) if groups else len(judgements)
        candidates = top_k_meta(meta_scores, max(1, per_group // 2) if k_meta is None else k_meta, groups)
    kept = [i for i in candidates if judgements[i].valid]
    for i in kept:
        if len(judgements[i].scores) != n:  # type: ignore[arg-type]
            raise ValueError(f"judgement {i} has {len(judgements[i].scores)} scores, expected {n}")  # type: ignore[arg-type]
    counts = [sum(judgements[i].scores[r] is not None for i in kept) for r in range(n)]  # type: ignore[index]
    if not kept or not all(counts):
        return Vote(None, None, None, [])
    rewards = [float(sum(judgements[i].scores[r] or 0 for i in kept)) for r in range(n)]  # type: ignore[index]
    mean = [reward / count for reward, count in zip(rewards, counts)]
    return Vote(rewards, mean, argmax_random_tie(mean, rng), kept)


PRIOR_SD = 0.25
""":func:`decision_risk`'s prior guess of the standard deviation of one judgement's score difference between two
responses, as a fraction of the score range's width (2.25 points on 1-10)."""
PRIOR_WEIGHT = 2
""":func:`decision_risk`'s prior variance counts as this many samples."""


def leader_is_safe(judgements: Sequence[Judgement | None], n: int, remaining: int, spread: float) -> bool:
    """True when the current leader (by summed valid scores) stays the unique best whatever ``remaining`` more
    judgements say, each able to move a rival at most ``spread`` (score range width) closer. Then stopping
    now picks the same best response as drawing all of them. One response is always decided."""
    if n < 2:
        return True
    sums = _sums([score_vector(j) for j in judgements], n)
    first, second = sorted(sums, reverse=True)[:2]
    return first - second > remaining * spread


def kept_leader_is_safe(
    judgements: Sequence[Judgement],
    meta_scores: Sequence[float],
    n: int,
    *,
    k: int,
    k_meta: int,
    spread: float,
) -> bool:
    """:func:`leader_is_safe` for meta-guided voting: True when the leader of the judgements kept so far
    (:func:`kept_so_far`) is the unique best of the ``k_meta`` that fixed-k voting keeps out of all ``k``, however
    the ``k - len(judgements)`` judgements still to come are scored and rated. Any ``x`` of them (at most
    ``k_meta``) may enter the final top ``k_meta``, pushing out the current ones rated lowest, and each may move a
    rival ``spread`` closer: the leader must stay strictly ahead on the current top ``k_meta - x`` for every ``x``
    (so nothing is decided while ``k_meta`` or more are still to come)."""
    if n < 2:
        return True
    m = len(judgements)
    leader = _unique_leader(_sums([score_vector(judgements[i]) for i in kept_so_far(meta_scores, k, k_meta)], n))
    if leader is None:
        return False
    ranked = sorted(range(m), key=lambda i: (-meta_scores[i], i))  # as top_k_meta ranks; later samples lose ties
    for x in range(max(0, k_meta - m), min(k - m, k_meta) + 1):
        sums = _sums([score_vector(judgements[i]) for i in ranked[: k_meta - x]], n)
        if any(sums[leader] - sums[r] <= x * spread for r in range(n) if r != leader):
            return False
    return True


def kept_so_far(meta_scores: Sequence[float], k: int, k_meta: int) -> list[int]:
    """The judgements meta-guided voting keeps after ``m = len(meta_scores)`` of ``k`` samples: the
    ``max(1, round(m * k_meta / k))`` rated highest, the share fixed-k voting keeps (all ``k_meta`` at ``m = k``)."""
    m = len(meta_scores)
    return top_k_meta(meta_scores, max(1, round(m * k_meta / k))) if m else []


def decision_risk(votes: Sequence[Sequence[float] | None], n: int, final: int, spread: float) -> float:
    """Estimated probability that the best response after ``final`` votes differs from the current leader's,
    given the ``votes`` so far (one score vector per voted judgement, None for an unreadable one).

    The estimator: for the leader ``L`` and each rival ``r``, a vote's difference ``d = s_L - s_r`` (0 for an
    unreadable vote, which adds nothing to either sum). The ``m`` differences so far are taken as independent
    draws from one distribution with unknown mean and variance, and so are the ``R = final - m`` still to come
    (exchangeable samples: the same prompt, temperature and shuffling for every sample). Their variance is the
    sample variance shrunk toward a prior (standard deviation :data:`PRIOR_SD` of ``spread``, worth
    :data:`PRIOR_WEIGHT` samples), so that a few identical votes do not make a certainty; the final margin
    ``D_m + D_R`` is then predicted by a Student t with ``m - 1 + PRIOR_WEIGHT`` degrees of freedom, centre
    ``D_m * final / m`` (the mean so far carried on) and scale ``sigma * sqrt(R * final / m)`` (the spread of the
    ``R`` new votes plus the uncertainty of the mean). The risk is the sum over rivals of the probability that the
    margin ends at or below 0 (a final tie counted half, as fixed-k voting breaks it at random), at most 1.

    The estimate is about the scores of this item's judgements, not the truth: a judge that is consistently
    wrong on an item is consistently wrong at k too. Stopping an item once its risk is at most ``risk`` makes
    the expected share of items whose decision differs from fixed k at most ``risk`` when the model holds,
    however many rounds were checked (each item stops once). It holds least for very few votes from a judge
    whose score differences are far from normal (e.g. rare large reversals), hence the prior. A tie for the lead
    has risk 1; so does no vote at all.
    """
    if n < 2:
        return 0.0
    m = len(votes)
    remaining = final - m
    if remaining <= 0:
        return 0.0
    sums = _sums(votes, n)
    leader = _unique_leader(sums)
    if m == 0 or leader is None:
        return 1.0
    dof = m - 1 + PRIOR_WEIGHT
    prior_var = (PRIOR_SD * spread) ** 2
    total = 0.0
    for r in range(n):
        if r == leader:
            continue
        diffs = [0.0 if v is None else v[leader] - v[r] for v in votes]
        mean = sum(diffs) / m
        squares = sum((d - mean) ** 2 for d in diffs)
        var = (squares + PRIOR_WEIGHT * prior_var) / dof
        scale = math.sqrt(var * remaining * final / m) if var > 0 else 0.0
        centre = mean * final
        total += t_tail(centre / scale, dof) if scale > 0 else float(centre <= 0)
        if total >= 1.0:
            return 1.0
    return total


def score_vector(judgement: Judgement | None) -> list[float] | None:
    """A judgement's scores if it can be voted (0 for a response it did not see), else None."""
    if judgement is None or not judgement.valid:
        return None
    return [0.0 if s is None else s for s in judgement.scores]  # type: ignore[union-attr]


def t_tail(t: float, dof: float) -> float:
    """P(T > t) for Student's t with ``dof`` degrees of freedom (through the regularized incomplete beta)."""
    if t == 0:
        return 0.5
    tail = 0.5 * _incomplete_beta(dof / 2, 0.5, dof / (dof + t * t))
    return tail if t > 0 else 1.0 - tail


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below this point; use the symmetry above it
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for i in range(1, 300):
        for numerator in (
            i * (b - i) * x / ((a + 2 * i - 1) * (a + 2 * i)),
            -(a + i) * (a + b + i) * x / ((a + 2 * i) * (a + 2 * i + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-12:
            break
    return math.exp(log_front) * f / a


def _sums(votes: Sequence[Sequence[float] | None], n: int) -> list[float]:
    sums = [0.0] * n
    for v in votes:
        if v is not None:
            for r, s in enumerate(v):
                sums[r] += s
    return sums


def _unique_leader(sums: Sequence[float]) -> int | None:
    best = max(sums)
    leaders = [r for r, s in enumerate(sums) if s == best]
    return leaders[0] if len(leaders) == 1 else None
