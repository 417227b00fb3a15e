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


def test_the_servers_scoring_flags_are_the_defaults_of_a_request_that_names_none(monkeypatch, capsys):
    import grm.cli
    from grm import ScoringOptions
    from grm.cli import main
    from grm.server.validation import request_defaults

    backend = ScriptedBackend(judge_by(by_length))
    config = ServerConfig(default_k=2, default_options={"temperature": 0.9, "max_new_tokens": 33})
    svc = RewardService(GRM(backend), config)

    async def work(s):
        await s.score({"query": "q", "responses": ["a", "bbb"], "seed": 0})
        await s.score({"query": "q", "responses": ["a", "bbb"], "seed": 0, "temperature": 0.2})

    run(svc, work)
    asked = [{(r.n, r.sampling.temperature, r.sampling.max_new_tokens) for r in call} for call in backend.calls]
    assert asked == [{(1, 0.9, 33)}, {(1, 0.2, 33)}] or asked == [{(2, 0.9, 33)}, {(2, 0.2, 33)}]

    seen = {}  # grm serve's flags become the defaults (they were accepted and ignored)
    monkeypatch.setattr("grm.server.serve", lambda *a, **k: seen.update(k["config"].default_options))
    monkeypatch.setattr(grm.cli, "load_grm", lambda *a, **k: None)
    monkeypatch.setattr(grm.cli, "load_meta_rm", lambda *a, **k: None)
    flags = ["--k-meta", "2", "--meta-rm", "m", "--strip-thinking", "--thinking-tokens", "64"]
    assert main(["serve", "-k", "4", *flags]) == 0
    assert {k: seen[k] for k in ("k_meta", "strip_thinking", "thinking_tokens")} == {
        "k_meta": 2,
        "strip_thinking": True,
        "thinking_tokens": 64,
    }
    assert main(["serve", "--tournament", "knockout"]) == 0 and seen["tournament"] == "knockout"
    assert request_defaults(ScoringOptions(k=3, seed=1)) == {}  # k and seed have settings of their own
    monkeypatch.setattr(grm.cli, "load_grm", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["serve", "-k", "4", "--k-meta", "2"]) == 2  # no --meta-rm: refused before loading
    assert "k_meta was given without a meta_rm" in capsys.readouterr().err
