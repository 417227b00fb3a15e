"""The HTTP backend against a local server that answers 429, 5xx, hangs, drops or sends garbage, as scripted:
retries, timeouts, error messages, n= fallback, concurrency, the sync API in a running loop, and that every
finished judgement is kept."""

import asyncio
import json
import time

import pytest
from servers import FaultServer, free_port

from grm import GRM, GenerationRequest, Sampling
from grm.backends import BackendUnavailableError, load_backend
from grm.backends.openai import OpenAIBackend
from helpers import judge_by

FAST = dict(retries=4, backoff=0.01, max_backoff=0.05, timeout=0.4, progress=False)


def serve(**script):
    return FaultServer(script, judge_by(len))


def rm_for(server, **kw):
    return GRM.from_openai(server.url, "judge", **{**FAST, **kw})


def test_retries_timeouts_and_errors_keep_every_finished_judgement():
    script = {
        "flaky": ["429", "500", "drop", "garbage", "ok"],
        "dead": ["500"],
        "hang": ["hang"],
        "bad": ["400"],
        "junk": ["garbage"],
    }
    with serve(**script) as server:
        items = [(f"case:{c}", ["a", "bb"]) for c in ["ok", "flaky", "dead", "hang", "bad", "junk"]]
        t = time.monotonic()
        ok, flaky, dead, hang, bad, junk = rm_for(server).score_batch(items, shuffle=False)
        elapsed = time.monotonic() - t
    assert ok.n_valid == 1 and ok.rewards == [1.0, 2.0]
    assert flaky.n_valid == 1 and flaky.rewards == [1.0, 2.0] and server.hits["flaky"] == 5
    err = dead.judgements[0].error
    assert dead.n_valid == 0 and server.hits["dead"] == 5
    assert err.startswith(f"HTTP 500 from {server.url}/chat/completions: dead says 500")
    assert err.endswith("(gave up after 5 attempts)")
    assert (
        hang.judgements[0].error
        == f"no answer from {server.url}/chat/completions within 0.4 s (gave up after 5 attempts)"
    )
    assert server.hits["hang"] == 5
    assert bad.judgements[0].error == f"HTTP 400 from {server.url}/chat/completions: bad says 400"
    assert server.hits["bad"] == 1, "a 400 is not retried"
    assert "unreadable answer (HTTP 200)" in junk.judgements[0].error
    assert "502 Bad Gateway (not JSON)" in junk.judgements[0].error
    assert elapsed < 5, "requests run concurrently and timeouts are per request"


def test_backoff_grows_and_honours_retry_after():
    with serve(slowdown=["retry_after:0.3", "500", "500", "ok"]) as server:
        backend = OpenAIBackend("judge", server.url, retries=3, backoff=0.05, max_backoff=1, progress=False)
        [[c]] = backend.generate([GenerationRequest([{"role": "user", "content": "case:slowdown"}])])
    assert c.error is None and c.n_tokens == 7
    gaps = [b - a for a, b in zip(server.times["slowdown"], server.times["slowdown"][1:])]
    assert gaps[0] >= 0.3, "Retry-After is a lower bound on the wait"
    assert 0.05 <= gaps[1] < 0.3 and gaps[2] >= 0.1, gaps  # 0.1 * jitter in [0.5, 1], then 0.2 * jitter


def test_unreachable_server_raises_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    rm = GRM.from_openai(url, "judge", **FAST)
    with pytest.raises(BackendUnavailableError, match=r"none of the 2 requests got an answer.*connection to .* failed"):
        rm.score_batch([("q1", ["a"]), ("q2", ["b"])])
    with serve(down=["503"], key=["401"]) as server:
        with pytest.raises(BackendUnavailableError, match="HTTP 503 .*down says 503 .gave up after 5 attempts"):
            rm_for(server).score("case:down", ["a"])
        with pytest.raises(BackendUnavailableError, match="HTTP 401 .*key says 401"):
            rm_for(server).score("case:key", ["a"])
        assert server.hits["key"] == 1


def test_outage_while_resampling_keeps_the_judgements_drawn():
    with serve(odd=["text:no scores here", "503"]) as server:
        rm = rm_for(server, max_retries=2)
        good, odd = rm.score_batch([("case:fine", ["a", "bb"]), ("case:odd", ["a", "bb"])], shuffle=False)
    assert good.n_valid == 1 and good.rewards == [1.0, 2.0]
    assert odd.n_valid == 0 and odd.judgements[0].text == "no scores here"
    assert odd.judgements[0].error == "no \\boxed{} with scores"
    assert server.hits["odd"] == 6  # the first draw, then one resample tried 5 times


@pytest.mark.parametrize("action", ["one_choice", "reject_n"])
def test_n_falls_back_to_separate_seeded_requests(action):
    with serve(fallback=[action]) as server:
        backend = OpenAIBackend("judge", server.url, **FAST)
        rm = GRM(backend)
        r = rm.score("case:fallback", ["a", "bb"], k=4, shuffle=False, seed=3)
        assert r.n_valid == 4 and r.rewards == [4.0, 8.0]
        assert backend.use_n is False
        sent = [p for p in server.payloads]
        singles = [p for p in sent if "n" not in p]
        assert len(singles) == (3 if action == "one_choice" else 4)
        base = next(p["seed"] for p in sent if p.get("n") == 4)
        assert sorted(p["seed"] for p in singles) == list(range(base + 4 - len(singles), base + 4))
        # from now on samples go out one by one without trying n= first
        server.payloads.clear()
        rm.score("case:fallback", ["a", "bb"], k=2, shuffle=False, seed=4)
        assert [p.get("n", 1) for p in server.payloads] == [1, 1]


def test_payload_greedy_copies_stop_and_prefix():
    with serve() as server:
        backend = OpenAIBackend("judge", server.url, extra_body={"top_k": 5}, **FAST)
        msgs = [{"role": "user", "content": "hi"}]
        out = backend.generate(
            [
                GenerationRequest(msgs, 3, Sampling(0.0, 50)),
                GenerationRequest(msgs, 1, Sampling(0.7, 20, top_p=0.9, seed=1, stop=("END",)), prefix="Specific"),
            ]
        )
    assert [len(o) for o in out] == [3, 1] and out[0][0].text == out[0][2].text
    greedy, sampled = sorted(server.payloads, key=lambda p: p["temperature"])
    assert greedy == {"model": "judge", "messages": msgs, "temperature": 0.0, "max_tokens": 50, "top_k": 5}
    assert sampled["messages"][-1] == {"role": "assistant", "content": "Specific"} and msgs == [msgs[0]]
    assert sampled["continue_final_message"] is True and sampled["add_generation_prompt"] is False
    assert (sampled["stop"], sampled["seed"], sampled["top_p"], sampled["max_tokens"]) == (["END"], 1, 0.9, 20)
    assert backend.usage == {"requests": 2, "prompt_tokens": 22, "completion_tokens": 14}


def test_sync_api_inside_a_running_loop_and_async_api_with_bounded_concurrency():
    with serve(default=["slow"]) as server:
        rm = rm_for(server, max_concurrency=2)

        async def main():
            inside = rm.score("q", ["a", "bb"], shuffle=False)  # sync call while this loop runs
            many = await asyncio.gather(*(rm.ascore(f"q{i}", ["a", "bb"], k=2, seed=i) for i in range(3)))
            batch = await rm.ascore_batch([("q", ["aaa"])], k=1)
            return inside, many, batch

        inside, many, batch = asyncio.run(main())
    assert inside.rewards == [1.0, 2.0]
    assert all(r.n_valid == 2 and r.rewards == [2.0, 4.0] for r in many)
    assert batch[0].rewards == [3.0]
    assert server.max_in_flight == 2, "at most max_concurrency requests in flight from one loop"


def test_api_key_from_the_environment_and_options(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    with serve() as server:
        backend = load_backend("openai", "judge", base_url=server.url, **FAST)
        backend.generate([GenerationRequest([{"role": "user", "content": "x"}])])
        OpenAIBackend("judge", server.url, api_key="sk-arg", **FAST).generate(
            [GenerationRequest([{"role": "user", "content": "x"}])]
        )
    assert [h.get("Authorization") for h in server.headers] == ["Bearer sk-env", "Bearer sk-arg"]
    assert "sk-env" not in repr(backend)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9")
    assert OpenAIBackend("m").url == "http://127.0.0.1:9/v1/chat/completions"
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        OpenAIBackend("m")
    with pytest.raises(ValueError, match="http"):
        OpenAIBackend("m", "127.0.0.1:8000")
    with pytest.raises(ValueError, match="max_concurrency must be >= 1, got 0"):
        OpenAIBackend("m", "http://x", max_concurrency=0)


def test_cli_scores_through_a_server_and_resumes_after_an_outage(tmp_path):
    from grm.cli import main

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"query": f"case:{c}", "responses": ["a", "bb"]}) + "\n" for c in "xy"))
    args = ["score", "--model", "judge", "--backend", "openai", "--input", str(inp), "--output", str(out)]
    args += ["--chunk-size", "1", "--no-shuffle", "--backend-arg", "retries=1", "--backend-arg", "backoff=0.01"]
    with serve(y=["503"]) as server:
        assert main([*args, "--backend-arg", f"base_url={server.url}"]) == 3  # an outage: exit 3, rows kept
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["index"], r["rewards"]) for r in rows] == [(0, [1.0, 2.0])], "the row finished before is kept"
    with serve() as server:
        assert main([*args, "--backend-arg", f"base_url={server.url}"]) == 0
        assert server.hits == {"y": 1}, "the run resumes at the row that failed"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["index"], r["rewards"]) for r in rows] == [(0, [1.0, 2.0]), (1, [1.0, 2.0])]


JUDGEMENT = "Analysis: fine.\nScores: \\boxed{4, 6}"


def _choice(content=JUDGEMENT, index=0, finish="stop"):
    return {"index": index, "message": {"role": "assistant", "content": content}, "finish_reason": finish}


ODD_ANSWERS = {
    "usage_lots": json.dumps({"choices": [_choice()], "usage": "lots"}),
    "tokens_text": json.dumps({"choices": [_choice()], "usage": {"completion_tokens": "many", "prompt_tokens": []}}),
    "tokens_inf": json.dumps({"choices": [_choice()], "usage": {"completion_tokens": "∞"}}).replace('"∞"', "Infinity"),
    "null_index": json.dumps({"choices": [_choice(index=None)], "usage": {"completion_tokens": 9}}),
    "finish_number": json.dumps({"choices": [_choice(finish=5)]}),
    "content_dict": json.dumps({"choices": [_choice(content={"text": JUDGEMENT})]}),
    "choice_string": json.dumps({"choices": ["Scores: \\boxed{4, 6}"]}),
    "nested": "[" * 100_000,
    "digits": json.dumps({"choices": [_choice(content="Scores: \\boxed{" + "7" * 5000 + ", 1}")]}),
    "cut": json.dumps({"choices": [_choice(content="Analysis: Response 2 says \\boxed{9, 9}", finish="length")]}),
}


def test_odd_http_answers_become_errors_or_judgements_never_exceptions():
    with FaultServer({case: [f"raw:{body}"] for case, body in ODD_ANSWERS.items()}, lambda *_: JUDGEMENT) as odd:
        rm = GRM.from_openai(odd.url, "judge", retries=0, timeout=10, progress=False)
        cases = [*ODD_ANSWERS, "plain"]
        rewards = rm.score_batch([(f"case:{c}", ["a", "bb"]) for c in cases], shuffle=False)
        by_case = dict(zip(cases, rewards))
        for case in ("usage_lots", "tokens_text", "tokens_inf", "null_index", "finish_number", "plain"):
            assert by_case[case].rewards == [4.0, 6.0], case
        assert by_case["null_index"].judgements[0].n_tokens == 9
        assert by_case["usage_lots"].judgements[0].n_tokens is None
        assert "has no text" in by_case["content_dict"].judgements[0].error
        for case in ("choice_string", "nested"):
            assert "unreadable answer (HTTP 200)" in by_case[case].judgements[0].error, case
        assert "out of range" in by_case["digits"].judgements[0].error
        assert "token limit" in by_case["cut"].judgements[0].error
        assert all(isinstance(v, int) for v in rm.backend.usage.values())


def _reasoning_choice(field, reasoning, content, finish="stop"):
    message = {"role": "assistant", "content": content, field: reasoning}
    return json.dumps({"choices": [{"index": 0, "message": message, "finish_reason": finish}]})


# case: the server's body (vLLM 0.11 and later send `reasoning`; older vLLM and hosted APIs `reasoning_content`)
THINKING_ANSWERS = {
    "reasoning_content": _reasoning_choice("reasoning_content", "R2 is right.", JUDGEMENT),
    "reasoning": _reasoning_choice("reasoning", "R2 is right.", JUDGEMENT),
    "only_in_reasoning": _reasoning_choice("reasoning", "So: Scores: \\boxed{9, 1}", "I cannot decide."),
    "only_in_reasoning_content": _reasoning_choice("reasoning_content", "Scores: \\boxed{9, 1}", "No verdict."),
    "cut_while_thinking": _reasoning_choice("reasoning_content", "Maybe Scores: \\boxed{9, 1} but", None, "length"),
    "cut_while_thinking_empty": _reasoning_choice("reasoning", "Scores: \\boxed{9, 1}, or", "", "length"),
}


def test_reasoning_returned_apart_is_kept_and_never_read_as_the_answer():
    """A server with a reasoning parser returns the thinking beside the answer: the backend keeps it as
    Completion.reasoning, from either field, and a verdict written only there is not the judge's verdict."""
    script = {case: [f"raw:{body}"] for case, body in THINKING_ANSWERS.items()}
    with FaultServer(script, lambda *_: JUDGEMENT) as server:
        backend = OpenAIBackend("judge", server.url, retries=0, timeout=10, progress=False)
        requests = [
            GenerationRequest([{"role": "user", "content": f"case:{case}"}], 1, Sampling(0.0, 64))
            for case in THINKING_ANSWERS
        ]
        completions = {case: c for case, [c] in zip(THINKING_ANSWERS, backend.generate(requests))}
        rm = GRM.from_openai(server.url, "judge", retries=0, timeout=10, progress=False)
        rewards = rm.score_batch([(f"case:{c}", ["a", "bb"]) for c in THINKING_ANSWERS], shuffle=False)
        by_case = dict(zip(THINKING_ANSWERS, rewards))
    for case in ("reasoning_content", "reasoning"):
        assert completions[case].text == JUDGEMENT and completions[case].reasoning == "R2 is right.", case
        (judgement,) = by_case[case].judgements
        assert by_case[case].rewards == [4.0, 6.0] and judgement.thinking == "R2 is right.", case
    for case in ("only_in_reasoning", "only_in_reasoning_content"):
        assert "\\boxed{9, 1}" in completions[case].reasoning and "boxed" not in completions[case].text, case
        (judgement,) = by_case[case].judgements
        assert by_case[case].rewards is None and judgement.scores is None, case
        assert "\\boxed{9, 1}" in judgement.thinking and judgement.error == "no \\boxed{} with scores", case
    for case in ("cut_while_thinking", "cut_while_thinking_empty"):
        assert completions[case].text == "" and completions[case].error is None, case
        assert completions[case].reasoning.startswith(("Maybe", "Scores")), case
        (judgement,) = by_case[case].judgements
        assert by_case[case].rewards is None, case
        assert judgement.error == "truncated in thinking: cut off at the token limit before </think>", case
