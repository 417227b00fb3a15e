"""OpenRLHF's remote reward protocol replayed as OpenRLHF sends it (openrlhf/utils/agent.py,
SingleTurnAgentExecutor._fetch_rewards_via_http, 2026): one sample per POST {"query": [prompt + response decoded with
the special tokens], "prompts": [prompt], "labels": [label]}, read back as rewards, scores and extra_logs."""

import asyncio
import random

import httpx
import pytest
from rl_helpers import SeededJudge, chatml
from servers import AppServer

from grm import GRM, Item, ScoringOptions
from grm.integrations.groups import Sample, group_key
from grm.server import ServerConfig, create_app
from helpers import ScriptedBackend, by_length, judge_by

PROMPT = chatml("What is 2+2?")
RESPONSES = ["4", "It is 4.", "5", "Four, since 2+2=4.", "22", "4!"]


def body(response: str, prompt: str = PROMPT, label: str | None = "4") -> dict:
    """What OpenRLHF posts for one sample: the query decoded with special tokens, so it ends with the EOS token."""
    return {"query": [prompt + response + "<|im_end|>"], "prompts": [prompt], "labels": [label]}


@pytest.fixture
def served():
    started = []

    def start(backend, **config):
        rm = GRM(backend)
        started.append(AppServer(create_app(rm, ServerConfig(**config))))
        return started[-1].url, rm

    yield start
    for s in started:
        s.stop()


def post_all(url, bodies):
    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            return await asyncio.gather(*(client.post("/get_reward", json=b) for b in bodies))

    return [r.json() for r in asyncio.run(main())]


def test_the_judge_sees_the_conversation_and_the_response_not_the_template(served):
    backend = ScriptedBackend(judge_by(by_length))
    url, _ = served(backend, seed=0)
    reply = httpx.post(f"{url}/get_reward", json=body("It is 4.")).json()
    assert reply["rewards"] == pytest.approx([(by_length("It is 4.") - 1) / 9]) and reply["scores"] == reply["rewards"]
    assert reply["extra_logs"] == {"grm_n_valid": [1.0], "grm_n_drawn": [1.0], "grm_group_size": [1.0]}
    sent = "\n".join(m["content"] for m in backend.calls[0][0].messages)
    assert "<|im_start|>" not in sent and "<|im_end|>" not in sent
    assert "What is 2+2?" in sent and "You are helpful." in sent
    assert "[The Start of Response 1]\nIt is 4.\n[The End of Response 1]" in sent
    assert "[The Start of Reference Answer]\n4" in sent  # the label is the reference answer


def test_per_sample_requests_of_a_group_in_any_order_get_the_group_judgement(served):
    replies = []
    for order_seed in (0, 1):  # two interleavings, two fresh servers with the same seed
        backend = SeededJudge()
        url, rm = served(backend, seed=11, group_size=len(RESPONSES), group_wait_s=10, default_k=3)
        order = random.Random(order_seed).sample(range(len(RESPONSES)), len(RESPONSES))
        got = post_all(url, [body(RESPONSES[i]) for i in order])
        replies.append({RESPONSES[i]: g for i, g in zip(order, got)})
        assert backend.shown and all(len(shown) == len(RESPONSES) for shown in backend.shown), "judged listwise"
    assert replies[0] == replies[1]
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "What is 2+2?"}]
    options = ScoringOptions(k=3, seed=11)
    key = group_key(Sample(messages, "", "4"), options)
    (expected,) = rm.score_batch([Item(messages, sorted(RESPONSES), reference="4")], options, keys=[key])
    normalized = dict(zip(sorted(RESPONSES), expected.normalized(rm.score_range)))
    for response, reply in replies[0].items():
        assert reply["rewards"] == pytest.approx([normalized[response]])
        assert reply["extra_logs"]["grm_group_size"] == [len(RESPONSES)]
    # one /score call on the whole group, with the same seed and the group's key as its id, gives the same rewards
    url, _ = served(SeededJudge(), default_k=3)
    whole = {"query": messages, "responses": sorted(RESPONSES), "reference": "4", "id": key, "k": 3, "seed": 11}
    scored = httpx.post(f"{url}/score", json=whole).json()
    assert dict(zip(sorted(RESPONSES), scored["normalized"])) == pytest.approx(normalized)


def test_a_missing_member_releases_the_group_after_the_wait_and_a_retry_costs_nothing(served):
    backend = SeededJudge()
    url, _ = served(backend, seed=3, group_size=4, group_wait_s=0.5)
    got = post_all(url, [body(r) for r in RESPONSES[:3]])  # the fourth never comes
    assert all(g["extra_logs"]["grm_group_size"] == [3] for g in got)
    judged = backend.judgements
    again = httpx.post(f"{url}/get_reward", json=body(RESPONSES[1])).json()  # OpenRLHF retries after a timeout
    assert again == got[1] and backend.judgements == judged
    groups = httpx.get(f"{url}/health").json()["groups"]
    assert groups["timed_out"] == 1 and groups["retried"] == 1 and groups["waiting"] == 0


def test_a_retried_request_is_judged_once_without_groups(served):
    backend = SeededJudge()
    url, _ = served(backend, seed=5)
    first = post_all(url, [body("4")] * 3)  # the first and two retries, while it is being judged or after
    again = httpx.post(f"{url}/get_reward", json=body("4")).json()
    assert first == [again] * 3 and backend.judgements == 1
    cache = httpx.get(f"{url}/health").json()["cache"]
    assert cache["hits"] == 3 and cache["misses"] == 1


def test_shaping_and_the_failed_reward(served):
    url, _ = served(ScriptedBackend(lambda m, j: "no verdict"), failed_reward=-1.0)
    reply = httpx.post(f"{url}/get_reward", json=body("4")).json()
    assert reply["rewards"] == [-1.0] and reply["scores"] == [-1.0] and reply["extra_logs"]["grm_n_valid"] == [0.0]
    url, _ = served(ScriptedBackend(judge_by(lambda r: 5)), length_penalty=0.5, group_size=2)
    short, long = post_all(url, [body("4"), body("4444")])
    assert short["rewards"] == pytest.approx([4 / 9]) and long["rewards"] == pytest.approx([4 / 9 - 0.5])
    assert short["scores"] == long["scores"] == pytest.approx([4 / 9])
