"""Calling a scorer, a GRM or a scalar reward function, the same way for evaluation and diagnostics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from grm.eval.base import EvalItem
from grm.scoring import JudgementRater, ScoringOptions
from grm.types import Message, Reward, normalize_query

ScalarRM = Callable[[list[Message], list[str]], Sequence[float]]
"""A scalar reward model: ``(messages, responses) -> one score per response``, higher is better."""


def is_grm(scorer: Any) -> bool:
    """Whether ``scorer`` is a GRM (has ``score_batch``), as opposed to a scalar reward function; anything else
    is a TypeError."""
    if callable(getattr(scorer, "score_batch", None)):
        return True
    if not callable(scorer):
        raise TypeError(f"scorer must be a GRM or a callable (messages, responses) -> scores, got {type(scorer)}")
    return False


def judge(
    scorer: Any,
    items: Sequence[EvalItem],
    options: ScoringOptions,
    *,
    meta_rm: JudgementRater | None = None,
    keys: Sequence[str] | None = None,
) -> list[Reward | list[float]]:
    """Score ``items`` with a GRM (one :class:`~grm.types.Reward` each, scored with ``options`` and ``meta_rm``
    in one ``score_batch`` call) or a scalar reward function (one checked list of floats each). A GRM seeds each
    item by ``options.seed`` and its key in ``keys`` (default: its id), so its reward does not depend on the chunk
    it is in."""
    if is_grm(scorer):
        keys = [it.id for it in items] if keys is None else keys
        return scorer.score_batch(list(items), options, meta_rm=meta_rm, keys=keys)
    return [_scalar_scores(scorer, it) for it in items]


def mean_scores(outcome: Reward | list[float]) -> list[float] | None:
    """Per-response scores of a :func:`judge` outcome: a Reward's voted mean (None if no judgement could be
    read), or a scalar reward function's scores."""
    return outcome.mean if isinstance(outcome, Reward) else outcome


def _scalar_scores(scorer: ScalarRM, item: EvalItem) -> list[float]:
    out = scorer(normalize_query(item.query), list(item.responses))
    try:
        scores = [float(s) for s in out]
    except (TypeError, ValueError) as e:
        raise TypeError(f"item {item.id}: the reward function must return numbers, got {out!r:.80}") from e
    if len(scores) != len(item.responses):
        raise ValueError(
            f"item {item.id}: the reward function returned {len(scores)} scores for {len(item.responses)} responses"
        )
    return scores
