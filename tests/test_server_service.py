"""grm.server.service without HTTP: each endpoint a method over explicit state, admission counted there."""

import asyncio

import pytest

from grm import GRM
from grm.server import BadRequest, RewardService, ServerConfig
from helpers import ScriptedBackend, by_length, judge_by


def service(config=None):
    return RewardService(GRM(ScriptedBackend(judge_by(by_length))), config)


def run(svc, work):
    """Run ``work(svc)`` with the service's batcher started, as the app's lifespan does."""

    async def main():
        svc.batcher.start()
        try:
            return await work(svc)
        finally:
            await svc.batcher.stop()

    return asyncio.run(main())


def test_endpoints_are_methods_over_the_service_state():
    svc = service()

    async def work(s):
        score = await s.score({"query": "q", "responses": ["a", "bbb"], "k": 2, "seed": 0, "id": "x"})
        reward = await s.get_reward({"query": ["P: a", "P: bbbb"], "prompts": ["P:", "P:"], "seed": 0})
        return score, reward

    score, reward = run(svc, work)
    assert score["mean"] == [by_length("a"), by_length("bbb")] and score["id"] == "x" and score["n_drawn"] == 2
    assert score["normalized"] == pytest.approx([(by_length("a") - 1) / 9, (by_length("bbb") - 1) / 9])
    assert reward["rewards"] == pytest.approx([(by_length(" a") - 1) / 9, (by_length(" bbbb") - 1) / 9])
    assert svc.health()["items"] == 3


def test_admission_refuses_past_the_limit_and_counts_served_requests():
    svc = service(ServerConfig(max_in_flight=1))
    with svc.admit():
        assert svc.in_flight == 1
        with pytest.raises(BadRequest) as e, svc.admit():
            pass
        assert e.value.status == 503 and "1 requests in flight" in str(e.value)
    with pytest.raises(RuntimeError), svc.admit():
        raise RuntimeError("failed")
    assert (svc.in_flight, svc.served) == (0, 1)
