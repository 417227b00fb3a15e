"""slime's remote reward protocol replayed as slime sends it (slime/rollout/rm_hub/__init__.py, remote_rm: POST
{"prompt": sample.prompt, "response": sample.response, "label": sample.label}, the reward read from the JSON reply
by --reward-key), and grm's custom reward function for --group-rm (batched_async_rm calls it with the group)."""

import asyncio
import random
from types import SimpleNamespace

import httpx
import pytest
from rl_helpers import SeededJudge, chatml
from servers import AppServer

from grm import GRM
from grm.integrations.slime import grm_rm
from grm.server import ServerConfig, create_app
from helpers import ScriptedBackend, by_length, judge_by

MESSAGES = [{"role": "user", "content": "Name a colour."}]
RESPONSES = ["red", "blue", "green", "a colour", "teal"]


@pytest.fixture
def served():
    started = []

    def start(backend, **config):
        started.append(AppServer(create_app(GRM(backend), ServerConfig(**config))))
        return started[-1].url

    yield start
    for s in started:
        s.stop()


def test_one_sample_as_slime_posts_it(served):
    backend = ScriptedBackend(judge_by(by_length))
    url = served(backend, seed=0)
    for prompt in (MESSAGES, chatml("Name a colour.", system="Be brief.")):  # chat messages, or templated text
        reply = httpx.post(f"{url}/reward", json={"prompt": prompt, "response": "blue", "label": None})
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["reward"] == pytest.approx((by_length("blue") - 1) / 9) == answer["score"]  # --reward-key reward
        assert answer["n_valid"] == answer["n_drawn"] == answer["group_size"] == 1
    sent = backend.calls[-1][0].messages[-1]["content"]
    assert "Name a colour." in sent and "<|im_start|>" not in sent
    bad = httpx.post(f"{url}/reward", json={"prompt": MESSAGES, "response": 3, "label": None})
    assert bad.status_code == 400 and "'response' must be a string" in bad.json()["error"]
    bad = httpx.post(f"{url}/reward", json={"prompt": MESSAGES, "response": "x", "metadata": {}})
    assert bad.status_code == 400 and "unknown field(s) ['metadata']" in bad.json()["error"]


def test_per_sample_posts_and_the_group_form_give_the_same_rewards(served):
    backend = SeededJudge()
    url = served(backend, seed=4, group_size=len(RESPONSES), default_k=2)

    async def per_sample():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            order = random.Random(0).sample(RESPONSES, len(RESPONSES))
            posts = [client.post("/reward", json={"prompt": MESSAGES, "response": r, "label": "x"}) for r in order]
            return {r: p.json() for r, p in zip(order, await asyncio.gather(*posts))}

    one_by_one = asyncio.run(per_sample())
    judged = backend.judgements
    other = served(SeededJudge(), seed=4, group_size=len(RESPONSES), default_k=2)
    samples = [{"prompt": MESSAGES, "response": r, "label": "x"} for r in RESPONSES]
    whole = httpx.post(f"{other}/reward", json={"samples": samples}).json()
    assert whole["rewards"] == [one_by_one[r]["reward"] for r in RESPONSES]
    assert whole["results"] == [one_by_one[r] for r in RESPONSES]
    assert judged == 2 and all(len(shown) == len(RESPONSES) for shown in backend.shown)  # k=2 judgements of all 5


def test_grm_custom_reward_function_for_group_rm(served):
    url = served(SeededJudge(), seed=9)
    samples = [SimpleNamespace(prompt=MESSAGES, response=r, label=7) for r in RESPONSES]  # a numeric label is text

    async def call(reward_key):
        args = SimpleNamespace(rm_url=f"{url}/reward", reward_key=reward_key)
        return await grm_rm(args, samples), await grm_rm(args, samples[0])

    floats, single = asyncio.run(call(None))
    dicts, single_dict = asyncio.run(call("reward"))
    assert [d["reward"] for d in dicts] == floats and all(isinstance(x, float) for x in floats)
    assert all(d["group_size"] == len(RESPONSES) for d in dicts)
    assert isinstance(single, float) and single_dict["reward"] == single and single_dict["group_size"] == 1
