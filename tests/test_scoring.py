"""The scoring core: ScoringOptions, the sans-IO plan and its driver, and the small pieces every caller shares."""

import asyncio
import random
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from grm import GRM, Completion, Example, Item, Reward, ScoringOptions
from grm.eval.base import EvalItem
from grm.integrations.trl import GRMReward
from grm.scoring import Generate, Rate, ScoringPlan, chunks, generation_call, read_judgement, run_blocking
from grm.search import GRMVerifier
from grm.seeding import item_seed, request_seed, seed_for, seeded_rng
from grm.training.meta_rm import build_dataset
from helpers import ScriptedBackend, judge_by, shown_responses

ITEMS = [("q1", ["a", "bbb", "cc"]), ("q2", ["dddd", "e"])]


def by_length():
    return ScriptedBackend(judge_by(lambda r: min(10, len(r))))


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be >= 1, got 0"),
        ({"k": "2"}, TypeError, "k must be an integer, got '2'"),
        ({"k": True}, TypeError, "k must be an integer"),
        ({"k": 2.0}, TypeError, "k must be an integer"),
        ({"seed": 1.5}, TypeError, "seed must be an integer"),
        ({"max_new_tokens": 0}, ValueError, "max_new_tokens must be >= 1"),
        ({"max_retries": -1}, ValueError, "max_retries must be >= 0"),
        ({"k": 4, "k_meta": 5}, ValueError, r"k_meta must be in 1\.\.k=4, got 5"),
        ({"k_meta": 0}, ValueError, "k_meta must be >= 1"),
        ({"adaptive_round": 0}, ValueError, "adaptive_round must be >= 1"),
        ({"temperature": -0.1}, ValueError, "temperature must be a finite number >= 0"),
        ({"temperature": float("nan")}, ValueError, "temperature must be a finite number >= 0"),
        ({"temperature": float("inf")}, ValueError, "temperature must be a finite number >= 0"),
        ({"temperature": "hot"}, ValueError, "temperature must be a finite number >= 0"),
        ({"shuffle": "no"}, TypeError, "shuffle must be True or False"),
        ({"adaptive": 1}, TypeError, "adaptive must be True or False"),
    ],
)
def test_options_are_validated_once_with_clear_errors(changes, error, match):
    with pytest.raises(error, match=match):
        ScoringOptions(**changes)
    with pytest.raises(error, match=match):
        ScoringOptions().replace(**changes)


def test_options_are_frozen_normalised_and_name_unknown_fields():
    options = ScoringOptions(k=np.int64(4), seed=np.int32(7))
    assert options.k == 4 and type(options.k) is int and type(options.seed) is int
    with pytest.raises(FrozenInstanceError):
        options.k = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"unknown scoring option\(s\) \['batch_size'\]; the options are k, shuffle"):
        options.replace(batch_size=3)
    with pytest.raises(TypeError, match="unknown scoring option"):
        GRM(by_length()).score_batch(ITEMS, batch_size=3)
    with pytest.raises(TypeError, match="options must be a grm.ScoringOptions, got dict"):
        GRM(by_length()).score_batch(ITEMS, {"k": 2})


def test_options_whole_or_by_keyword_score_alike_and_keywords_override():
    options = ScoringOptions(k=4, seed=3, temperature=0.7)
    whole = GRM(by_length()).score_batch(ITEMS, options)
    by_keyword = GRM(by_length()).score_batch(ITEMS, k=4, seed=3, temperature=0.7)
    assert [r.to_dict() for r in whole] == [r.to_dict() for r in by_keyword]
    backend = by_length()
    [r] = GRM(backend).score_batch(ITEMS[:1], options, k=2, shuffle=False)
    assert len(r.judgements) == 2 and all(j.order == [0, 1, 2] for j in r.judgements)
    assert backend.calls[0][0].sampling.temperature == 0.7
    assert asyncio.run(GRM(by_length()).ascore("q1", ITEMS[0][1], options)).to_dict() == whole[0].to_dict()


def test_the_plan_is_sans_io_typed_steps_in_and_replies_back():
    plan = ScoringPlan(
        ITEMS,
        ScoringOptions(k=2, seed=0, shuffle=False, k_meta=1),
        prompt=lambda item, order: [{"role": "user", "content": "|".join(item.responses[p] for p in order)}],
        score_range=(1, 10),
        max_new_tokens=16,
        max_retries=0,
        rated=True,
    )
    steps = plan.steps()
    generate = next(steps)
    assert isinstance(generate, Generate)
    # no shuffle: each item's two samples share one request (n=2)
    assert [(r.messages[0]["content"], r.n) for r in generate.requests] == [("a|bbb|cc", 2), ("dddd|e", 2)]
    # each item's request is seeded from the item's own seed (its key: its position here) and its first sample
    seeds = [request_seed(item_seed(0, i), 0, 0) for i in range(2)]
    assert [r.sampling.seed for r in generate.requests] == seeds
    replies = [[Completion("\\boxed{1, 9, 5}"), Completion("\\boxed{9, 1, 5}")], [Completion("\\boxed{2, 3}")] * 2]
    rate = steps.send(replies)
    assert isinstance(rate, Rate) and [len(js) for _, _, js in rate.entries] == [2, 2]
    with pytest.raises(StopIteration) as done:
        steps.send([[0.1, 0.9], [0.5, 0.4]])
    first, second = done.value.value
    assert first.kept == [1] and first.rewards == [9.0, 1.0, 5.0] and first.best == 0  # the meta RM picked sample 1
    assert second.kept == [0] and second.rewards == [2.0, 3.0]


def test_the_blocking_driver_needs_no_event_loop_and_runs_inside_one():
    class NoLoop(ScriptedBackend):
        def generate(self, requests):
            with pytest.raises(RuntimeError):
                asyncio.get_running_loop()  # nothing runs an event loop around a blocking score_batch
            return super().generate(requests)

    expected = [r.to_dict() for r in GRM(by_length()).score_batch(ITEMS, k=3, seed=1)]
    backend = NoLoop(judge_by(lambda r: min(10, len(r))))
    assert [r.to_dict() for r in GRM(backend).score_batch(ITEMS, k=3, seed=1)] == expected

    async def inside_a_loop():  # a blocking call made from async code still completes
        return GRM(by_length()).score_batch(ITEMS, k=3, seed=1)

    assert [r.to_dict() for r in asyncio.run(inside_a_loop())] == expected


def test_run_blocking_hands_errors_to_the_plan():
    def plan():
        try:
            yield Generate([])
        except KeyError as e:
            return f"kept after {e!r}"

    def execute(step):
        raise KeyError("boom")

    assert run_blocking(plan(), execute) == "kept after KeyError('boom')"


def test_read_judgement_maps_the_shown_order_back_to_the_callers():
    j = read_judgement(Completion("Scores: \\boxed{7, 2, 9}", n_tokens=5), [2, 0, 1], (1, 10))
    # shown: response 2 got 7, response 0 got 2, response 1 got 9
    assert j.scores == [2, 9, 7] and j.order == [2, 0, 1] and j.n_tokens == 5
    failed = read_judgement(Completion("", n_tokens=3, error="timeout"), (1, 0), (1, 10))
    assert not failed.valid and failed.error == "timeout" and failed.order == [1, 0] and failed.n_tokens == 3


def test_chunks_in_order_or_balanced_after_a_seeded_shuffle():
    assert chunks(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunks(0, 3) == [] and chunks(2, 8) == [[0, 1]]
    parts = chunks(7, 3, random.Random(0))
    assert sorted(map(len, parts)) == [2, 2, 3] and sorted(sum(parts, [])) == list(range(7))
    assert parts == chunks(7, 3, random.Random(0))
    with pytest.raises(ValueError, match="n_max must be >= 1"):
        chunks(3, 0)


def test_reward_normalized_maps_the_score_range_onto_0_1():
    r = Reward(rewards=[6.0, 20.0], best=1, judgements=[], n_valid=2, mean=[3.0, 10.0])
    assert r.normalized((1, 10)) == pytest.approx([2 / 9, 1.0])
    assert r.normalized((0, 1)) == [3.0, 10.0]
    assert r.normalized((5, 5)) == [0.0, 0.0]  # a range of one value: nothing to spread
    assert Reward(rewards=None, best=None, judgements=[], n_valid=0, mean=None).normalized((1, 10)) is None


def test_seeds_are_named_helpers():
    assert generation_call(0, 0, 2) == 0 and generation_call(1, 0, 2) == 3 and generation_call(1, 2, 2) == 5
    assert request_seed(5, 1, 2) == request_seed(5, 1, 2) != request_seed(5, 2, 1)
    assert 0 <= request_seed(-3, 10**9, 7) < 2**31
    assert seed_for(None, 4) is None and seed_for(10, 4) == 14
    assert seeded_rng(3, 1).random() == seeded_rng(3, 1).random() != seeded_rng(3, 2).random()


def test_item_example_and_eval_item_are_one_family():
    e = Example("q", ["a", "b"], [1.0, 0.0], id="x", principles="Be brief")
    assert isinstance(e, Item) and e.principles == "Be brief"
    item = Item.coerce(e)
    assert type(item) is Item and item.responses == ["a", "b"] and item.query == [{"role": "user", "content": "q"}]
    ev = EvalItem.from_dict({**e.to_dict(), "subset": "chat", "unknown": 1})
    assert isinstance(ev, Example) and ev.subset == "chat" and ev.truth == [1.0, 0.0] and ev.id == "x"
    assert GRM(by_length()).score_batch([ev], k=1)[0].mean == [1.0, 1.0]


def test_callers_take_options_whole_and_refuse_what_cannot_work(tmp_path):
    rm = GRM(by_length())
    with pytest.raises(ValueError, match="without a meta_rm"):
        GRMReward(rm, k=4, k_meta=2)
    with pytest.raises(ValueError, match="without a meta_rm"):
        GRMVerifier(rm, ScoringOptions(k=4, k_meta=2))
    with pytest.raises(ValueError, match="adaptive=True would draw fewer"):
        build_dataset(rm, [], tmp_path / "d.jsonl", ScoringOptions(k=4, adaptive=True))
    with pytest.raises(ValueError, match="so would a budget"):
        build_dataset(rm, [], tmp_path / "d.jsonl", ScoringOptions(k=4, budget=0.5))
    reward = GRMReward(rm, ScoringOptions(k=2, seed=5), n_max=2)
    assert reward(["p"] * 3, ["a", "bbb", "cc"]) == pytest.approx([0.0, 2 / 9, 1 / 9])
    assert reward.options == ScoringOptions(k=2, seed=5)  # each call seeds afresh without changing the options
    assert all(isinstance(GRMVerifier(rm, o).options.seed, int) for o in (None, ScoringOptions()))  # drawn, recorded


def seeded_noise():
    """A backend whose every sample depends on its engine seed only: scores drawn from the request's seed."""

    def generate(requests):
        out = []
        for r in requests:
            n_shown = len(shown_responses(r.messages))
            completions = []
            for j in range(r.n):
                rng = random.Random(r.sampling.seed + j)
                scores = ", ".join(str(rng.randint(1, 10)) for _ in range(n_shown))
                completions.append(Completion(f"Analysis:\nx\n\nScores: \\boxed{{{scores}}}", 5, "stop"))
            out.append(completions)
        return out

    backend = ScriptedBackend(lambda m, j: "")
    backend.generate = generate
    return backend


def test_an_item_id_is_its_seeding_key():
    """Items with ids get the same rewards scored whole, in halves and reversed (no keys= given); without ids the
    position seeds them, so reversing changes them."""
    items = [Item(f"q{i}", ["a", "bb", "ccc"], id=f"row-{i}") for i in range(12)]
    rm = GRM(seeded_noise())
    whole = [r.rewards for r in rm.score_batch(items, k=2, seed=3)]
    halves = [r.rewards for r in rm.score_batch(items[:6], k=2, seed=3) + rm.score_batch(items[6:], k=2, seed=3)]
    backwards = [r.rewards for r in rm.score_batch(items[::-1], k=2, seed=3)][::-1]
    assert whole == halves == backwards
    assert whole == [r.rewards for r in rm.score_batch(items, k=2, seed=3, keys=[f"row-{i}" for i in range(12)])]
    plain = [Item(i.query, i.responses) for i in items]
    assert [r.rewards for r in rm.score_batch(plain[::-1], k=2, seed=3)][::-1] != whole
    dicts = [{"query": i.query, "responses": i.responses, "id": i.id} for i in items]
    assert [r.rewards for r in rm.score_batch(dicts, k=2, seed=3)] == whole


@pytest.mark.parametrize(
    ("item", "error", "match"),
    [
        ({"query": "q", "responses": ["a"], "id": 1.5}, TypeError, "item id must be a string or an integer"),
        ({"query": "q", "responses": ["a"], "id": True}, TypeError, "item id must be a string or an integer"),
        ({"query": "q", "responses": ["a"], "id": ["x"]}, TypeError, "item id must be a string or an integer"),
        ({"query": "q", "responses": ["a", "b"], "hint": 2}, ValueError, "hint must index one of the 2"),
        ({"query": "q", "responses": ["a", "b"], "hint": "0"}, TypeError, "hint must be an integer"),
        ({"query": "q", "responses": ["a"], "hint": 11}, ValueError, "hint for one response must be a score"),
    ],
)
def test_bad_ids_and_hints_are_refused_naming_them(item, error, match):
    with pytest.raises(error, match=match):
        GRM(by_length()).score_batch([item], k=1)


def test_a_hint_is_rendered_in_the_order_shown_and_the_reward_records_its_seed():
    backend = by_length()
    rm = GRM(backend)
    reward = rm.score(Item("q", ["a", "bbb", "cc"], hint=1).query, ["a", "bbb", "cc"], k=4, seed=None)
    assert isinstance(reward.seed, int) and rm.score("q", ["a", "bbb", "cc"], k=4, seed=reward.seed) == reward
    (hinted,) = rm.score_batch([Item("q", ["a", "bbb", "cc"], hint=1)], k=4, seed=0)
    positions = set()
    for request in backend.calls[-1]:
        shown = shown_responses(request.messages)
        positions.add(shown.index("bbb"))
        assert f"the best response is Response {shown.index('bbb') + 1}." in request.messages[-1]["content"]
    assert len(positions) > 1 and hinted.seed == 0 and hinted.best == 1


def test_a_reward_prints_briefly_and_says_when_its_best_is_a_tie():
    rm = GRM(ScriptedBackend(judge_by(lambda r: 5)))
    tied = rm.score("q", ["a", "b"], k=3, seed=1)
    assert tied.tie and tied.best in (0, 1)
    assert repr(tied) == f"Reward(rewards=[15, 15], mean=[5, 5], best={tied.best} (tie), valid=3/3, seed=1)"
    clear = GRM(by_length()).score("q", ["a", "bbb"], k=2, seed=1)
    assert not clear.tie and "judgements" not in repr(clear) and clear.to_dict()["judgements"]
