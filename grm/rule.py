"""SPCT's correctness rule: is a judgement's set of scores right, given ground-truth rewards?

Rejective fine-tuning keeps the judgements it calls correct, rule-based RL rewards them, the meta RM learns to
predict it, and benchmarks score a vote's best response against :func:`best_index`.
"""

from __future__ import annotations

from collections.abc import Sequence


def best_index(truth: Sequence[float]) -> int:
    """Index of the unique maximum of ``truth``; ValueError if the maximum is shared (no unique best)."""
    if len(truth) < 1:
        raise ValueError("truth is empty")
    top = max(truth)
    winners = [i for i, t in enumerate(truth) if t == top]
    if len(winners) > 1:
        raise ValueError(f"truth {list(truth)} has no unique best (responses {winners} tie at {top})")
    return winners[0]


def is_correct(scores: Sequence[int] | None, truth: Sequence[float]) -> bool:
    """SPCT's rule. With n >= 2 responses: the score of argmax(truth) is strictly above every other score.
    With one response: the score equals the ground-truth rating. Missing scores or a wrong count: False."""
    if scores is None or len(scores) != len(truth):
        return False
    if len(truth) == 1:
        return scores[0] == truth[0]
    b = best_index(truth)
    return all(scores[b] > s for i, s in enumerate(scores) if i != b)
