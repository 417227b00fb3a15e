"""The rule-based reward for online RL, built on SPCT's correctness rule (:mod:`grm.rule`, re-exported here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from grm.parsing import parse_judgement
from grm.rule import best_index, is_correct
from grm.types import completion_text

__all__ = ["best_index", "is_correct", "spct_reward"]


def spct_reward(
    completions: Sequence[Any],
    truth: Sequence[Sequence[float]],
    score_range: Sequence[Sequence[int] | None] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    **_: Any,
) -> list[float]:
    """SPCT's rule-based reward as a TRL (1.x) GRPO reward function: +1 for a correct judgement, -1 otherwise.

    TRL passes the dataset's columns as keyword arguments, one value per completion: ``truth`` holds the
    ground-truth rewards **in the order the prompt shows the responses**, and the optional ``score_range``
    column the template's ``[low, high]`` (default: the parser's 1..10). Each completion (a string or
    conversational messages) is parsed as a judgement of ``len(truth)`` responses; unparseable output, a wrong
    number of scores or a score out of range gets -1 (no separate format reward). With ``log_metric`` (TRL
    passes it) the fraction of unparseable completions is logged as ``spct/unparseable``.
    """
    if len(truth) != len(completions):
        raise ValueError(f"got {len(completions)} completions but {len(truth)} truth values (one per completion)")
    ranges = score_range if score_range is not None else [None] * len(completions)
    rewards, unparseable = [], 0
    for completion, t, r in zip(completions, truth, ranges):
        kwargs = {"score_range": (int(r[0]), int(r[1]))} if r is not None else {}
        judgement = parse_judgement(completion_text(completion), len(t), **kwargs)
        unparseable += judgement.scores is None
        rewards.append(1.0 if is_correct(judgement.scores, t) else -1.0)
    if log_metric is not None and completions:
        log_metric("spct/unparseable", unparseable / len(completions))
    return rewards
