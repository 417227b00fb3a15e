"""GroupBuffer: per-sample reward calls put back together into their groups and judged listwise, the same rewards
however the calls interleave, a missing member never stalling the others, retries judged no second time."""

import asyncio
import random

import pytest

from grm import GRM, Item, ScoringOptions
from grm.integrations.groups import GroupBuffer, Sample, group_key, group_plan
from grm.integrations.shaping import Shaping
from helpers import ScriptedBackend, by_length, judge_by, shown_responses

QUERY = [{"role": "user", "content": "Say something."}]
RESPONSES = ["a", "bbbb", "cc", "dddddd", "e", "ffff"]
OPTIONS = ScoringOptions(k=2, seed=7)


def buffer(rm, **kwargs):
    async def judge(items, options, keys):
        return await rm.ascore_batch(items, options, keys=keys)

    settings = {"size": len(RESPONSES), "wait_s": 5.0, "n_max": 8, "score_range": rm.score_range, **kwargs}
    return GroupBuffer(judge, **settings)


def by_length_rm():
    backend = ScriptedBackend(judge_by(by_length))
    return GRM(backend), backend


async def one_by_one(buf, responses, *, delay=0.0):
    async def one(r):
        await asyncio.sleep(delay * random.random())
        return await buf.reward(Sample(QUERY, r), OPTIONS)

    return await asyncio.gather(*(one(r) for r in responses))


@pytest.mark.parametrize("order_seed", [0, 1])
def test_per_sample_calls_in_any_order_get_the_group_judgement(order_seed):
    rm, backend = by_length_rm()
    shuffled = random.Random(order_seed).sample(RESPONSES, len(RESPONSES))
    results = asyncio.run(one_by_one(buffer(rm), shuffled, delay=0.02))
    assert len(backend.calls) == 1 and len(backend.calls[0]) <= 2  # one engine call: the group's k=2 samples
    assert sorted(shown_responses(backend.calls[0][0].messages)) == sorted(RESPONSES)  # the whole group, listwise
    key = group_key(Sample(QUERY, "x"), OPTIONS)
    (expected,) = rm.score_batch([Item(QUERY, sorted(RESPONSES))], OPTIONS, keys=[key])
    for response, result in zip(shuffled, results):
        assert result.reward == expected and result.group_size == len(RESPONSES)
        assert result.score == pytest.approx((by_length(response) - 1) / 9) == result.value
        assert expected.rewards[result.index] == 2 * by_length(response)


def test_a_group_missing_a_member_is_released_after_the_wait_and_the_late_one_judged_alone():
    rm, backend = by_length_rm()
    buf = buffer(rm, wait_s=0.3)

    async def main():
        early = asyncio.gather(*(buf.reward(Sample(QUERY, r), OPTIONS) for r in RESPONSES[:-1]))
        results = await asyncio.wait_for(early, timeout=5)
        counters = buf.counters()
        late = await asyncio.wait_for(buf.reward(Sample(QUERY, RESPONSES[-1]), OPTIONS), timeout=1)
        retries = [await buf.reward(Sample(QUERY, r), OPTIONS) for r in (RESPONSES[0], RESPONSES[-1])]
        return results, counters, late, retries

    results, counters, late, retries = asyncio.run(main())
    assert retries == [results[0], late] and buf.counters()["retried"] == 2  # both retries answered, none judged
    assert [r.group_size for r in results] == [5] * 5 and all(r.value is not None for r in results)
    assert counters["timed_out"] == 1 and counters["completed"] == 0 and counters["waiting"] == 0
    assert late.group_size == 1 and late.score == pytest.approx((by_length(RESPONSES[-1]) - 1) / 9)
    assert buf.counters()["late"] == 1
    assert [len(shown_responses(call[0].messages)) for call in backend.calls] == [5, 1]


def test_big_groups_are_judged_in_chunks_and_identical_responses_share_one_reward():
    rm, backend = by_length_rm()
    responses = [f"r{'x' * i}" for i in range(10)] + ["rx"]  # "rx" twice
    results = asyncio.run(one_by_one(buffer(rm, size=len(responses), n_max=4), responses))
    items = {tuple(sorted(shown_responses(r.messages))) for call in backend.calls for r in call}
    assert sorted(map(len, items)) == [3, 3, 4]  # 10 distinct responses in balanced chunks of at most 4
    twice = [r for resp, r in zip(responses, results) if resp == "rx"]
    assert twice[0] == twice[1] and all(r.group_size == 11 for r in results)
    plan = group_plan(QUERY, None, responses, "k", 4)
    assert [key for _, key, _ in plan] == ["k/0", "k/1", "k/2"]
    assert sorted(t for _, _, texts in plan for t in texts) == sorted(set(responses))


def test_a_retried_sample_costs_no_judgement():
    rm, backend = by_length_rm()
    buf = buffer(rm)

    async def main():
        first = await one_by_one(buf, RESPONSES)
        again = await buf.reward(Sample(QUERY, RESPONSES[2]), OPTIONS)  # a client that timed out and retries
        whole = await buf.judge_group([Sample(QUERY, r) for r in RESPONSES], OPTIONS)
        return first, again, whole

    first, again, whole = asyncio.run(main())
    assert again == first[2] and whole == first
    assert len(backend.calls) == 1 and buf.counters()["retried"] == 1 + len(RESPONSES)


def test_a_caller_that_left_is_replaced_by_its_retry_not_doubled():
    rm, backend = by_length_rm()
    buf = buffer(rm, size=3, wait_s=2.0)

    async def main():
        gone = asyncio.ensure_future(buf.reward(Sample(QUERY, "a"), OPTIONS))
        await asyncio.sleep(0.05)
        gone.cancel()  # its client timed out
        retry = buf.reward(Sample(QUERY, "a"), OPTIONS)
        twin = buf.reward(Sample(QUERY, "a"), OPTIONS)  # an identical rollout from another caller: a member
        other = buf.reward(Sample(QUERY, "bb"), OPTIONS)
        return await asyncio.gather(retry, twin, other)

    retry, twin, other = asyncio.run(main())
    assert retry.group_size == twin.group_size == other.group_size == 3
    assert buf.counters()["completed"] == 1 and buf.counters()["timed_out"] == 0


def test_shaping_within_a_group():
    rm = GRM(ScriptedBackend(judge_by(lambda r: 1 if r.startswith("bad") else 5)))
    responses = ["good", "good and long!", "bad"]
    shaped = Shaping(length_penalty=0.1, unscored="min")
    results = asyncio.run(one_by_one(buffer(rm, size=3, shaping=shaped), responses))
    assert [r.score for r in results] == pytest.approx([4 / 9, 4 / 9, 0.0])
    # lengths 4, 14 and 3: the shortest loses nothing, the longest 0.1
    assert [r.value for r in results] == pytest.approx([4 / 9 - 0.1 * 1 / 11, 4 / 9 - 0.1, 0.0])
    assert Shaping(unscored="min").apply([0.5, None, 0.2], [1, 2, 3]) == [0.5, 0.2, 0.2]
    assert Shaping(unscored=-1.0).apply([None], [1]) == [-1.0] and Shaping().apply([None], [1]) == [None]
    for bad in ({"length_penalty": -1}, {"unscored": "max"}, {"unscored": float("nan")}):
        with pytest.raises(ValueError):
            Shaping(**bad)
