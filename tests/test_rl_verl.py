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
from rl_helpers import SeededJudge
from servers import AppServer, FaultServer

from grm import GRM
from grm.server import ServerConfig, create_app
from helpers import by_length, judge_by, shown_responses

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
