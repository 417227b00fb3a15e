"""``grm.eval.cache``: an evaluation's cache rows, read back, and matched against the run that resumes them."""

import json
import logging
import re

import pytest
from eval_helpers import marker_grm, marker_scalar

from grm import Judgement, Reward
from grm.eval import EvalItem
from grm.eval.cache import FRESH, EvalCache, cache_row, match, read_cache
from grm.eval.plan import plan_evaluation

ITEM = EvalItem("q", ["a [q9]", "b [q2]"], [1.0, 0.0], id="7", subset="alpacaeval-easy")


def reward(n: int = 2, meta: list[float] | None = None) -> Reward:
    judgements = [Judgement(text="x", scores=[9, 2], n_tokens=5) for _ in range(n)]
    return Reward([9.0 * n, 2.0 * n], 0, judgements, n, [9.0, 2.0], list(range(n)), meta, n_retries=1, seed=3)


def plan(scorer=None, **kw):
    rated = kw.pop("rated", False)
    return plan_evaluation("rewardbench", scorer or marker_grm(), None, kw, rated=rated)


def test_rows_round_trip_to_what_the_metrics_need(tmp_path):
    path = tmp_path / "c.jsonl"
    with EvalCache(path) as cache:
        cache.write(cache_row(ITEM, reward(2, [0.5, 0.1]), 2, adaptive=False))
        cache.write(cache_row(EvalItem("q", ["x", "y"], [1.0, 0.0], id="8"), [0.1, 0.9], 1, adaptive=False))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["k"] == 2 and rows[0]["reward"]["judgements"][0]["text"] == "x" and "adaptive" not in rows[0]
    assert rows[1] == {"id": "8", "subset": "all", "scores": [0.1, 0.9]}
    cached = read_cache(path)
    assert cached["7"].judgements == [Judgement(text="", scores=[9, 2])] * 2, "texts dropped as they are read"
    assert (cached["7"].k, cached["7"].meta, cached["7"].n_drawn, cached["7"].n_tokens) == (2, [0.5, 0.1], 3, 10)
    assert cached["7"].vote.best == 0 and cached["8"].k is None and cached["8"].vote is None
    assert cache_row(ITEM, reward(1), 4, adaptive=True)["adaptive"] is True


def test_take_checks_the_row_against_the_run_and_pops_it(tmp_path, caplog):
    path = tmp_path / "c.jsonl"
    with EvalCache(path) as cache:
        cache.write(cache_row(ITEM, reward(2), 2, adaptive=False))
        cache.write(cache_row(EvalItem("q", ["x", "y"], [1.0, 0.0], id="gone"), reward(2), 2, adaptive=False))
    cache = EvalCache(path)
    judged = cache.take(ITEM, plan(k=2))
    assert judged.id == "7" and judged.lengths == [6, 6] and judged.n_drawn == 3 and judged.vote.mean == [9.0, 2.0]
    assert cache.take(ITEM, plan(k=2)) is None, "each cached item is taken once"
    with caplog.at_level(logging.WARNING):
        cache.warn_unused()
    assert "1 cached items are not in this data" in caplog.text
    refusal = rf"c.jsonl: item '7' has k=2 cached judgements, expected k=4; {re.escape(FRESH)}"
    with pytest.raises(ValueError, match=refusal):
        EvalCache(path).take(ITEM, plan(k=4))


def test_without_a_path_nothing_is_read_or_written(tmp_path):
    with EvalCache(None) as cache:
        cache.write({"id": "1"})
        assert cache.take(ITEM, plan()) is None and cache.entries == {}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "row, run, message",
    [
        (dict(outcome=[0.1, 0.2]), dict(), "was judged by a scalar reward function, not by this scorer"),
        (dict(), dict(scorer=marker_scalar), "was judged by a GRM, not by this scorer"),
        (dict(adaptive=True), dict(k=2), "was judged adaptively, and this run is a fixed-k run"),
        (dict(), dict(k=2, adaptive=True), "was judged with all k=2, and this run is adaptive"),
        (dict(adaptive=True, k=4), dict(k=2, adaptive=True), r"judged adaptively with k=4 \(2 judgements\), not k=2"),
        (dict(), dict(k=2, rated=True), "was judged without a meta RM"),
        (dict(meta=[1.0, 0.0], adaptive=True), dict(k=2, adaptive=True), "with a meta RM, which made its vote"),
        (dict(outcome=[0.1, 0.2, 0.3], k=1), dict(scorer=marker_scalar), "cached scores for other than its 2"),
    ],
)
def test_a_row_made_otherwise_is_refused_naming_the_item_and_how_to_start_afresh(tmp_path, row, run, message):
    path = tmp_path / "c.jsonl"
    outcome = row.get("outcome", reward(2, row.get("meta")))
    with EvalCache(path) as cache:
        cache.write(cache_row(ITEM, outcome, row.get("k", 2), adaptive=row.get("adaptive", False)))
    [entry] = read_cache(path).values()
    with pytest.raises(ValueError, match=f"^here .*{message}.*{re.escape(FRESH)}$"):
        match(entry, ITEM, plan(**run), where="here")


def test_a_foreign_file_is_not_taken_for_a_cache(tmp_path):
    foreign = tmp_path / "f.jsonl"
    foreign.write_text('{"id": "1", "rewards": [1, 2]}\n')
    with pytest.raises(ValueError, match="neither 'reward' nor 'scores'; not a grm eval cache"):
        EvalCache(foreign)
