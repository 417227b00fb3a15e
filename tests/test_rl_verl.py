"""verl's reward loop (docs/advance/reward_loop.rst; verl/experimental/reward_loop/reward_manager/naive.py calls
compute_score(data_source=, solution_str=, ground_truth=, extra_info=, reward_router_address=,
reward_model_tokenizer=) once per sample, awaiting it when it is a coroutine function, and reads result["score"]):
the async function through grm serve, and the recipe where grm's OpenAI backend talks to verl's reward router."""

import asyncio
import importlib.util
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
from rl_helpers import SeededJudge, longer_wins, seeded_score
from servers import AppServer, FaultServer

from grm import GRM, Item, MetaRM, ScoringOptions
from grm.assets import default_meta_rm_path
from grm.backends import Completion
from grm.integrations.groups import Sample, group_key, sample_key
from grm.server import ServerConfig, create_app
from helpers import ScriptedBackend, by_length, judge_by, shown_responses

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "verl_grm_async.py"
SOLUTIONS = ["x = 1", "x = 2", "x equals 1", "one"]


def example():
    spec = importlib.util.spec_from_file_location("verl_grm_async", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_sample(compute_score, solutions, **kwargs):
    """The reward loop: one task per sample, gathered."""

    async def main():
        calls = [
            compute_score(
                data_source="demo",
                solution_str=s,
                ground_truth="1",
                extra_info={"question": "Solve x - 1 = 0."},
                **kwargs,
            )
            for s in solutions
        ]
        return await asyncio.gather(*calls)

    return asyncio.run(main())


def test_compute_score_asks_grm_serve_and_its_group_buffer(monkeypatch):
    backend = SeededJudge()
    server = AppServer(create_app(GRM(backend), ServerConfig(seed=2, group_size=len(SOLUTIONS))))
    try:
        monkeypatch.setenv("GRM_URL", server.url)
        monkeypatch.setenv("GRM_K", "2")
        module = example()
        assert inspect.iscoroutinefunction(module.compute_score)  # verl awaits it
        results = per_sample(module.compute_score, SOLUTIONS)
    finally:
        server.stop()
    assert all(0.0 <= r["score"] <= 1.0 and r["grm_group_size"] == len(SOLUTIONS) for r in results)
    assert backend.judgements == 2 and all(sorted(s) == sorted(SOLUTIONS) for s in backend.shown)
    with pytest.raises(KeyError, match="extra_info"):
        asyncio.run(module.compute_score("demo", "x", None, {}))


@pytest.mark.parametrize("group_size", [0, len(SOLUTIONS)])
def test_router_recipe_has_verl_servers_generate_and_grm_judge(monkeypatch, group_size):
    with FaultServer({}, judge_by(by_length)) as router:
        monkeypatch.setenv("GRM_GROUP_SIZE", str(group_size))
        monkeypatch.setenv("GRM_SEED", "0")
        address = router.url.removeprefix("http://").removesuffix("/v1")  # verl passes host:port
        tokenizer = SimpleNamespace(name_or_path="/models/the-grm")
        results = per_sample(
            example().router_compute_score, SOLUTIONS, reward_router_address=address, reward_model_tokenizer=tokenizer
        )
    assert [r["score"] for r in results] == pytest.approx([(by_length(s) - 1) / 9 for s in SOLUTIONS])
    assert all(p["model"] == "/models/the-grm" for p in router.payloads)
    shown = [shown_responses(p["messages"]) for p in router.payloads]
    assert [len(s) for s in shown] == ([1] * len(SOLUTIONS) if group_size == 0 else [len(SOLUTIONS)])
    assert "[The Start of Reference Answer]\n1" in router.payloads[0]["messages"][-1]["content"]
    assert all(r["grm_group_size"] == max(1, group_size) for r in results)


def varied(messages, j):
    """Each sample (seeded ``j``) scores the shown responses differently, so which judgements are voted matters."""
    scores = [seeded_score(r, j) for r in shown_responses(messages)]
    return f"Analysis:\nsample {j}.\n\nScores: \\boxed{{{', '.join(map(str, scores))}}}"


class SeededScript(ScriptedBackend):
    """``script(messages, seed + j)`` for sample j of a request seeded ``seed``: FaultServer's ``seeded`` engine."""

    def generate(self, requests):
        seeds = [r.sampling.seed or 0 for r in requests]
        return [
            [Completion(self.script(r.messages, seed + j), 7, "stop") for j in range(r.n)]
            for r, seed in zip(requests, seeds)
        ]


def route(solutions, **kwargs):
    with FaultServer({"default": ["seeded"]}, kwargs.pop("answer", varied)) as router:
        address = router.url.removeprefix("http://").removesuffix("/v1")
        tokenizer = SimpleNamespace(name_or_path="/models/the-grm")
        return per_sample(
            example().router_compute_score, solutions, reward_router_address=address, reward_model_tokenizer=tokenizer
        )


@pytest.mark.parametrize("group_size", [0, len(SOLUTIONS)])
def test_router_recipe_votes_with_a_meta_rm(monkeypatch, group_size):
    """GRM_META_RM is loaded in verl's process and rates the judgements of verl's GenRM servers; the GRM_K_META it
    rates highest are voted, as GRM.score_batch(meta_rm=...) votes them."""
    for name, value in {"GRM_GROUP_SIZE": group_size, "GRM_SEED": 0, "GRM_K": 4, "GRM_K_META": 2}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("GRM_META_RM", str(default_meta_rm_path()))
    monkeypatch.setenv("GRM_META_RM_DEVICE", "cpu")
    results = route(SOLUTIONS)

    query = [{"role": "user", "content": "Solve x - 1 = 0."}]
    options = ScoringOptions(k=4, seed=0, k_meta=2)
    if group_size:
        items, keys = [Item(query, sorted(SOLUTIONS), reference="1")], [group_key(Sample(query, "", "1"), options)]
    else:
        items = [Item(query, [s], reference="1") for s in SOLUTIONS]
        keys = [sample_key(Sample(query, s, "1")) for s in SOLUTIONS]
    rm, meta = GRM(SeededScript(varied)), MetaRM.from_pretrained(default_meta_rm_path(), progress=False)

    def expected(with_meta):
        rewards = rm.score_batch(items, options if with_meta else options.replace(k_meta=None), keys=keys, **with_meta)
        values = [v for r in rewards for v in r.normalized(rm.score_range)]
        return dict(zip(sorted(SOLUTIONS), values)) if group_size else dict(zip(SOLUTIONS, values))

    guided, plain = expected({"meta_rm": meta}), expected({})
    assert guided != plain  # the meta RM's choice changes the rewards, so the check below tells them apart
    assert {s: r["score"] for s, r in zip(SOLUTIONS, results)} == pytest.approx(guided)
    assert all(r["grm_n_drawn"] == 4 for r in results)


def test_router_recipe_k_meta_needs_a_meta_rm(monkeypatch):
    monkeypatch.setenv("GRM_K_META", "2")
    monkeypatch.delenv("GRM_META_RM", raising=False)
    with pytest.raises(ValueError, match="GRM_K_META was set without GRM_META_RM"):
        route(SOLUTIONS[:1])


def test_router_recipe_with_a_pairwise_judge_holds_the_group(monkeypatch):
    monkeypatch.setenv("GRM_JUDGE", "pairwise-verdict")
    monkeypatch.setenv("GRM_SEED", "0")
    monkeypatch.setenv("GRM_GROUP_SIZE", "0")
    with pytest.raises(ValueError, match="'pairwise-verdict' judge compares two responses.*GRM_GROUP_SIZE"):
        route(SOLUTIONS[:1], answer=longer_wins)
    monkeypatch.setenv("GRM_GROUP_SIZE", str(len(SOLUTIONS)))
    results = route(SOLUTIONS, answer=longer_wins)
    ranked = sorted(SOLUTIONS, key=len)  # "one", "x = 1", "x = 2", "x equals 1": two of the same length tie
    wins = {"one": 0, "x = 1": 1.5, "x = 2": 1.5, "x equals 1": 3}
    assert {s: r["score"] for s, r in zip(SOLUTIONS, results)} == pytest.approx({s: wins[s] / 3 for s in ranked})
