"""GRM pipeline on a scripted backend: shuffling, mapping back, batching, retries, errors."""

import random

import pytest

from grm import GRM, Completion
from grm.model import Item
from helpers import ScriptedBackend, judge_by, shown_responses


def by_length():
    return ScriptedBackend(judge_by(lambda r: min(10, len(r))))


def test_scores_come_back_in_the_callers_order_whatever_the_shuffle():
    backend = by_length()
    rm = GRM(backend)
    r = rm.score("q", ["aaaa", "a", "aaaaaaa", "aa"], k=6, seed=3)
    assert r.n_valid == 6 and r.n_invalid == 0
    for j in r.judgements:
        assert j.scores == [4, 1, 7, 2]
        assert sorted(j.order) == [0, 1, 2, 3]
    assert len({tuple(j.order) for j in r.judgements}) > 1, "shuffle should vary the order across samples"
    assert r.rewards == [24.0, 6.0, 42.0, 12.0] and r.mean == [4.0, 1.0, 7.0, 2.0] and r.best == 2
    # the prompt the backend saw shows responses in each judgement's order
    shown = [shown_responses(req.messages) for req in backend.calls[0]]
    assert any(s[0] != "aaaa" for s in shown)


def test_same_seed_same_orders_and_no_shuffle():
    a = GRM(by_length()).score("q", ["a", "bb", "ccc"], k=5, seed=11)
    b = GRM(by_length()).score("q", ["a", "bb", "ccc"], k=5, seed=11)
    assert [j.order for j in a.judgements] == [j.order for j in b.judgements]
    c = GRM(by_length()).score("q", ["a", "bb", "ccc"], k=5, seed=11, shuffle=False)
    assert all(j.order == [0, 1, 2] for j in c.judgements)


def test_one_backend_call_per_batch_with_n_for_identical_orders_and_greedy_default():
    backend = by_length()
    rm = GRM(backend)
    rewards = rm.score_batch([("q1", ["a", "bb"]), {"query": "q2", "responses": ["ccc"]}], k=8, seed=0)
    assert len(backend.calls) == 1
    reqs = backend.calls[0]
    # item 1 has two possible orders, item 2 one: at most 3 requests whose n add up to 16
    assert len(reqs) <= 3 and sum(r.n for r in reqs) == 16
    assert all(r.sampling.temperature == 0.5 for r in reqs)
    assert rewards[1].rewards == [24.0]
    backend.calls.clear()
    rm.score("q", ["a", "b"])
    assert [r.sampling.temperature for r in backend.calls[0]] == [0.0]
    rm.score("q", ["a", "b"], temperature=0.9, max_new_tokens=33)
    assert backend.calls[1][0].sampling.temperature == 0.9 and backend.calls[1][0].sampling.max_new_tokens == 33


def test_invalid_samples_are_counted_and_retried():
    calls = {"n": 0}

    def flaky(messages, j):
        calls["n"] += 1
        return "no scores here" if calls["n"] % 2 else judge_by(len)(messages, j)

    rm = GRM(ScriptedBackend(flaky))
    r = rm.score("q", ["a", "bb"], k=4, seed=0, shuffle=False)
    assert r.n_valid == 2 and r.n_invalid == 2 and r.rewards == [2.0, 4.0] and r.kept == [1, 3]
    assert r.judgements[0].error == "no \\boxed{} with scores" and r.judgements[0].text == "no scores here"

    calls["n"] = 0
    backend = ScriptedBackend(flaky)
    # calls 1 and 3 fail; retry 1 redraws both (5 fails, 6 works); retry 2 redraws one (7 fails)
    r = GRM(backend, max_retries=2).score("q", ["a", "bb"], k=4, seed=0, shuffle=False)
    assert r.n_valid == 3 and r.n_retries == 3 and [len(c) for c in backend.calls] == [1, 1, 1]
    assert [sum(q.n for q in c) for c in backend.calls] == [4, 2, 1]
    calls["n"] = 0
    r = GRM(ScriptedBackend(flaky), max_retries=3).score("q", ["a", "bb"], k=4, seed=0, shuffle=False)
    assert r.n_valid == 4 and r.rewards == [4.0, 8.0]
    # a retry of a greedy sample samples instead of repeating the same greedy failure
    calls["n"] = 0
    backend = ScriptedBackend(flaky)
    GRM(backend, max_retries=1).score("q", ["a", "bb"])
    assert [c[0].sampling.temperature for c in backend.calls] == [0.0, 0.5]


def test_all_invalid_gives_none_with_errors_kept():
    r = GRM(ScriptedBackend(lambda m, j: "Scores: \\boxed{99, 1}")).score("q", ["a", "b"], k=3)
    assert r.rewards is None and r.best is None and r.mean is None and r.n_valid == 0
    assert [j.error for j in r.judgements] == ["score 99 out of range [1, 10]"] * 3


def test_backend_errors_become_judgement_errors():
    class Failing:
        def generate(self, requests):
            return [[Completion("", None, "error", "HTTP 500: boom") for _ in range(r.n)] for r in requests]

    r = GRM(Failing()).score("q", ["a"], k=2)
    assert r.n_valid == 0 and {j.error for j in r.judgements} == {"HTTP 500: boom"}


def test_ties_for_best_are_random_and_seeded():
    rm = GRM(ScriptedBackend(judge_by(lambda r: 5)))
    bests = {rm.score("q", ["a", "b", "c"], seed=s).best for s in range(30)}
    assert bests == {0, 1, 2}
    assert rm.score("q", ["a", "b", "c"], seed=4).best == rm.score("q", ["a", "b", "c"], seed=4).best


def test_build_prompt_is_exactly_what_is_sent():
    backend = by_length()
    rm = GRM(backend)
    rm.score([{"role": "user", "content": "hi"}], ["x", "yy"], shuffle=False, principles="Be kind", reference="r")
    assert backend.calls[0][0].messages == rm.build_prompt("hi", ["x", "yy"], principles="Be kind", reference="r")


def test_bad_input_and_bad_backends():
    rm = GRM(by_length())
    with pytest.raises(ValueError, match="k must be >= 1"):
        rm.score("q", ["a"], k=0)
    with pytest.raises(ValueError, match="unknown item keys"):
        rm.score_batch([{"query": "q", "responses": ["a"], "respones": 1}])
    with pytest.raises(ValueError, match="needs 'query' and 'responses'"):
        rm.score_batch([{"query": "q"}])
    with pytest.raises(TypeError, match="generate"):
        GRM(object())

    class Short:
        def generate(self, requests):
            return []

    with pytest.raises(RuntimeError, match="0 results for 1 requests"):
        GRM(Short()).score("q", ["a"])


def test_item_coerce_does_not_mutate_and_validates():
    item = Item("q", ["a"])
    out = Item.coerce(item)
    assert out is not item and out.query == [{"role": "user", "content": "q"}] and item.query == "q"
    assert Item.coerce(("q", ["a", "b"])).responses == ["a", "b"]
    with pytest.raises(TypeError):
        Item.coerce(42)


def test_score_range_follows_the_template():
    rm = GRM(ScriptedBackend(lambda m, j: "Scores: \\boxed{1}"), template="correctness")
    assert rm.score_range == (0, 1)
    assert rm.score("q", ["a"]).rewards == [1.0]
    assert GRM(ScriptedBackend(lambda m, j: "\\boxed{2}"), template="correctness").score("q", ["a"]).n_valid == 0


def test_large_batch_keeps_rows_apart():
    rng = random.Random(0)
    items = [(f"q{i}", ["x" * rng.randint(1, 10) for _ in range(rng.randint(1, 4))]) for i in range(50)]
    rewards = GRM(by_length()).score_batch(items, k=3, seed=1)
    for (_, responses), r in zip(items, rewards):
        assert r.mean == [float(len(x)) for x in responses]


class FixedMeta:
    """A meta RM stand-in that rates judgements by a list given up front, recording what it saw."""

    def __init__(self, ratings):
        self.ratings, self.seen = ratings, []

    def score_batch(self, entries):
        self.seen.extend(entries)
        return [self.ratings[: len(js)] for _, _, js in entries]


def test_meta_guided_voting_keeps_top_k_meta():
    script = iter(["\\boxed{9, 1}", "\\boxed{1, 9}", "garbage", "\\boxed{2, 8}"])
    meta = FixedMeta([0.1, 0.9, 0.95, 0.8])
    r = GRM(ScriptedBackend(lambda m, j: next(script))).score(
        "q", ["a", "b"], k=4, shuffle=False, meta_rm=meta, k_meta=3
    )
    # top 3 by meta: 2 (invalid), 1, 3 -> voted 1 and 3
    assert r.meta_scores == [0.1, 0.9, 0.95, 0.8] and r.kept == [1, 3] and r.rewards == [3.0, 17.0] and r.best == 1
    assert r.n_valid == 3
    query, responses, judgements = meta.seen[0]
    assert query == [{"role": "user", "content": "q"}] and responses == ["a", "b"] and len(judgements) == 4
    with pytest.raises(ValueError, match="k_meta must be in 1..k=4"):
        GRM(by_length()).score("q", ["a"], k=4, meta_rm=meta, k_meta=5)
    with pytest.raises(ValueError, match="without a meta_rm"):
        GRM(by_length()).score("q", ["a"], k=4, k_meta=2)
