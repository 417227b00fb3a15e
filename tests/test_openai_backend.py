"""The HTTP backend against real vLLM OpenAI servers started on 127.0.0.1: one with the tiny memorized GRM, one
with a random tiny LM where samples must differ (tests/conftest.py says what each makes certain on any machine)."""

import asyncio

import pytest
from servers import vllm_server

from grm import GRM, GenerationRequest, Sampling
from grm.backends.openai import OpenAIBackend
from helpers import MEMORIZED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def urls(memorized_grm_path, random_lm_path, tmp_path_factory):
    """The base URLs of the memorized GRM's server and the random LM's, started side by side."""
    logs = tmp_path_factory.mktemp("vllm")
    with (
        vllm_server(memorized_grm_path, logs / "memorized.log") as memorized,
        vllm_server(random_lm_path, logs / "random.log") as random_lm,
    ):
        yield memorized.wait(), random_lm.wait()


@pytest.fixture(scope="module")
def base_url(urls):
    return urls[0]


def backend_for(url, model, **kw):
    return OpenAIBackend(model, url, progress=False, **kw)


def test_greedy_and_voting_through_the_server(base_url, memorized_grm_path):
    backend = backend_for(base_url, memorized_grm_path)
    rm = GRM(backend, max_new_tokens=80)
    rewards = rm.score_batch([(q, r) for q, r, _ in MEMORIZED], seed=0)
    for (_, _, truth), r in zip(MEMORIZED, rewards):
        assert r.n_valid == 1 and r.judgements[0].scores == truth, r.judgements[0].error
        assert r.judgements[0].n_tokens > 10 and r.judgements[0].principles[0].name == "Accuracy"
    q, responses, truth = MEMORIZED[1]
    sent = backend.usage["requests"]
    r = rm.score(q, responses, k=8, seed=3)
    assert backend.usage["requests"] - sent == 2, "one request per response order, samples via n="
    assert backend.use_n is None, "vLLM honours n: no fallback"
    assert r.n_valid >= 7 and all(j.scores == truth for j in r.judgements if j.valid)
    assert {tuple(j.order) for j in r.judgements} == {(0, 1), (1, 0)}


def test_n_and_separate_seeded_requests_give_the_same_samples(urls, random_lm_path):
    req = GenerationRequest([{"role": "user", "content": "Tell me something new."}], 8, Sampling(1.0, 12, seed=11))
    [with_n] = backend_for(urls[1], random_lm_path).generate([req])
    [one_by_one] = backend_for(urls[1], random_lm_path, use_n=False).generate([req])
    assert [c.text for c in with_n] == [c.text for c in one_by_one]
    assert len({c.text for c in with_n}) > 1, "the random LM's samples differ unless seeded alike"
    assert all(c.n_tokens is None for c in with_n)  # the server counts the tokens of all n together
    assert all(c.n_tokens == 12 or (c.finish_reason == "stop" and 1 <= c.n_tokens < 12) for c in one_by_one)


def test_server_errors_name_the_answer_and_keep_the_rest(base_url, memorized_grm_path):
    rm = GRM(backend_for(base_url, memorized_grm_path, retries=1, backoff=0.01), max_new_tokens=80)
    q, responses, truth = MEMORIZED[0]
    good, too_long = rm.score_batch([(q, responses), ("word " * 2000, ["a"])], seed=0)
    assert good.judgements[0].scores == truth
    error = too_long.judgements[0].error
    assert error.startswith(f"HTTP 400 from {base_url}/chat/completions: ") and "context length" in error
    wrong_model = GRM(backend_for(base_url, "no-such-model", retries=0))
    with pytest.raises(Exception, match="HTTP 404 .*no-such-model"):
        wrong_model.score(q, responses)


def test_stop_prefix_and_async(base_url, memorized_grm_path):
    backend = backend_for(base_url, memorized_grm_path)
    msgs = GRM(backend).build_prompt(*MEMORIZED[0][:2])
    [[full]], [[stopped]] = (
        backend.generate([GenerationRequest(msgs, 1, Sampling(0.0, 80, stop=stop))]) for stop in ((), ("Analysis",))
    )
    assert stopped.text == full.text[: full.text.index("Analysis")] and stopped.stop_string == "Analysis"
    prefix = full.text[: full.text.index("Analysis:\n") + 10]
    [[continued]] = backend.generate([GenerationRequest(msgs, 1, Sampling(0.0, 80), prefix=prefix)])
    assert continued.text == full.text[len(prefix) :]

    rm = GRM(backend, max_new_tokens=80)

    async def main():
        return await asyncio.gather(*(rm.ascore(q, r) for q, r, _ in MEMORIZED))

    assert [r.judgements[0].scores for r in asyncio.run(main())] == [t for _, _, t in MEMORIZED]


def test_a_hung_request_is_given_up_within_minutes_by_default():
    """The defaults bound one request that never answers: (retries + 1) x timeout, plus backoff, about 8 minutes
    (it was about 61 with 600 s and 5 retries)."""
    from grm.backends.openai import OpenAIBackend

    backend = OpenAIBackend("m", "http://127.0.0.1:9/v1", progress=False)
    assert (backend.retries + 1) * backend.timeout <= 8 * 60
