"""Adaptive voting: stop drawing once the leader cannot be overtaken; same best as fixed-k, fewer samples."""

import re
from collections import Counter

import pytest

from grm import GRM
from grm.types import Judgement
from grm.voting import leader_is_safe
from helpers import ScriptedBackend

QUERY = re.compile(r"\[The Start of Query\]\n(.*?)\n\[The End of Query\]", re.S)


def streamed(streams):
    """A backend that gives each query's samples the next scores of its stream (responses in input order)."""
    seen = Counter()

    def script(messages, _):
        q = QUERY.search(messages[-1]["content"]).group(1)
        scores = streams[q][seen[q] % len(streams[q])]
        seen[q] += 1
        return "Scores: \\boxed{" + ", ".join(map(str, scores)) + "}"

    return ScriptedBackend(script), seen


def test_leader_is_safe_by_hand():
    js = [Judgement("", scores=[10, 1]), Judgement("", scores=[9, 2]), Judgement("x", error="bad")]
    assert leader_is_safe(js, 2, remaining=1, spread=9)  # margin 16 > 9
    assert not leader_is_safe(js, 2, remaining=2, spread=9)  # margin 16 > 18 fails
    assert not leader_is_safe([Judgement("", scores=[5, 5])], 2, remaining=0, spread=9)  # a tie is not safe
    assert leader_is_safe([], 1, remaining=10, spread=9)


def test_clear_leader_stops_early_with_the_same_best():
    backend, seen = streamed({"q": [[10, 1]]})
    r = GRM(backend).score("q", ["a", "b"], k=32, shuffle=False, seed=0, adaptive=True)
    # after m samples the margin is 9m; stop once 9m > 9(32 - m): m = 20 (rounds of 4)
    assert len(r.judgements) == 20 and seen["q"] == 20 and r.best == 0
    assert r.rewards == [200.0, 20.0] and r.mean == [10.0, 1.0]
    backend, _ = streamed({"q": [[10, 1]]})
    assert GRM(backend).score("q", ["a", "b"], k=32, shuffle=False, seed=0).best == 0


def test_close_race_draws_everything_and_matches_fixed_k():
    stream = [[6, 5], [5, 6], [7, 5], [5, 6]]
    full_backend, _ = streamed({"q": stream})
    full = GRM(full_backend).score("q", ["a", "b"], k=16, shuffle=False, seed=3)
    backend, seen = streamed({"q": stream})
    r = GRM(backend).score("q", ["a", "b"], k=16, shuffle=False, seed=3, adaptive=True)
    assert seen["q"] == 16 and r.best == full.best and r.rewards == full.rewards


def test_batch_rounds_only_carry_undecided_items():
    streams = {"easy": [[10, 1, 1]], "hard": [[5, 6, 5], [6, 5, 5]], "single": [[7]]}
    backend, seen = streamed(streams)
    items = [("easy", ["a", "b", "c"]), ("hard", ["a", "b", "c"]), ("single", ["a"])]
    rs = GRM(backend).score_batch(items, k=8, shuffle=False, seed=1, adaptive=True, adaptive_round=2)
    assert [len(r.judgements) for r in rs] == [6, 8, 2]  # easy: 9m > 9(8 - m) at m = 6; one response: 1 round
    assert seen == {"easy": 6, "hard": 8, "single": 2}
    assert len(backend.calls) == 4  # rounds of 2 until the hard item has all 8
    assert [sum(req.n for req in call) for call in backend.calls] == [6, 4, 4, 2]
    assert rs[0].best == 0


def test_adaptive_option_errors():
    backend, _ = streamed({"q": [[5, 6]]})
    rm = GRM(backend)
    with pytest.raises(ValueError, match="meta_rm"):
        rm.score("q", ["a", "b"], k=4, adaptive=True, meta_rm=object())
    with pytest.raises(ValueError, match="adaptive_round"):
        rm.score("q", ["a", "b"], k=4, adaptive=True, adaptive_round=0)
