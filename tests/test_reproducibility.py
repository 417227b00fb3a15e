"""Seeded scoring gives an item the same result whatever else is in its batch, however a job is chunked, in any
order and when it resumes: the scoring plan (each item seeded by its key), the transformers backend (each row
samples from a stream of its own), the HTTP backend (a seeded fake server), the reward server, ``grm score``, and
vLLM (slow).

Real models run in float64 here: left padding and batch shape move a row's logits in the last bits (see
docs/scoring.md, Reproducibility), which in float64 flips a greedy or sampled token with a probability near 1e-13, so
these equalities hold on any machine. The fake engines' samples depend on (prompt, seed) exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import httpx
import pytest
import torch
from servers import ENGINE_ARGS, VLLM_ENV, AppServer, FaultServer

from grm import GRM, GenerationRequest, Sampling
from grm.backends import Completion
from grm.backends.transformers import RowSampler, TransformersBackend
from grm.cli import main
from grm.isolation import score_isolated
from grm.parsing import format_judgement
from grm.seeding import item_seed
from grm.server import ServerConfig, create_app
from grm.types import Principle
from helpers import shown_responses

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()
ITEMS = [
    (
        f"Question {i}: " + " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(1 + i % 5)) + "?",
        [" ".join(WORDS[(i + r * 5 + j) % len(WORDS)] for j in range(1 + (i + r) % 6)) for r in range(2 + i % 3)],
    )
    for i in range(12)
]
"""Twelve items of different lengths (prompts pad differently) with two to four responses."""


def digest(*parts) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest(), 16)


def seeded_judge(messages: list[dict[str, str]], seed: int | None) -> str:
    """A judgement that depends on the prompt and the sample's seed only. Each shown response has a score of its
    own, moved by up to 2 by the seed (so leaders are often safe early, as adaptive voting needs); one sample in
    five has no scores line (unreadable, so retries happen)."""
    if digest(seed, messages[-1]["content"]) % 5 == 0:
        return "Analysis: I cannot decide."
    scores = [min(10, max(1, 1 + digest(r) % 10 + digest(seed, r) % 5 - 2)) for r in shown_responses(messages)]
    return format_judgement([Principle("Accuracy", 1.0, "right")], "Judged.", scores)


class SeededBackend:
    """An engine whose sample ``i`` of a request seeded ``s`` is ``seeded_judge(messages, s + i)`` (greedy: the
    seed is None): what every grm backend promises, exactly. A prompt with ``case:boom`` fails the whole call."""

    def generate(self, requests):
        out = []
        for r in requests:
            if any("case:boom" in m["content"] for m in r.messages):
                raise ValueError("this batch holds a poisoned prompt")
            s = r.sampling
            seeds = [None] * r.n if s.temperature == 0 else [s.seed + j for j in range(r.n)]
            out.append([Completion(seeded_judge(r.messages, seed), 7, "stop") for seed in seeds])
        return out


def dicts(rewards) -> list[dict]:
    return [r.to_dict() for r in rewards]


def in_pieces(rm, items, keys, sizes, **options) -> list[dict]:
    """Score ``items`` (named by ``keys``) in consecutive calls of the given sizes."""
    out, start = [], 0
    for size in sizes:
        out += dicts(rm.score_batch(items[start : start + size], keys=keys[start : start + size], **options))
        start += size
    assert start == len(items)
    return out


def assert_batch_invariant(rm, items, one_by_one: bool = True, **options) -> list[dict]:
    """The rewards of ``items`` scored at once equal those of the same items in halves, in reverse order and (with
    ``one_by_one``) one at a time, each under its key (its position in the whole list). Returns the whole call's
    rewards."""
    keys = list(range(len(items)))
    whole = dicts(rm.score_batch(items, **options))
    half = len(items) // 2
    assert in_pieces(rm, items, keys, [half, len(items) - half], **options) == whole
    assert dicts(rm.score_batch(items[::-1], keys=keys[::-1], **options))[::-1] == whole
    if one_by_one:
        assert in_pieces(rm, items, keys, [1] * len(items), **options) == whole
    return whole


# ---------------------------------------------------------------------------------------------------- the plan


@pytest.mark.parametrize(
    "options",
    [
        dict(k=3),
        dict(k=1),
        dict(k=4, shuffle=False),
        dict(k=6, adaptive=True, adaptive_round=2),
        dict(k=2, temperature=0.0),
    ],
    ids=["k3", "greedy", "no-shuffle", "adaptive", "k2-greedy"],
)
def test_the_plan_seeds_each_item_by_its_key_not_its_batch(options):
    rm = GRM(SeededBackend(), max_retries=2)
    whole = assert_batch_invariant(rm, ITEMS, seed=3, **options)
    assert dicts(rm.score_batch(ITEMS, seed=3, **options)) == whole, "a seeded call repeats"
    keys = list(range(len(ITEMS)))
    assert in_pieces(rm, ITEMS, keys, [5, 5, 2], seed=3, **options) == whole
    assert in_pieces(rm, ITEMS, keys, [7, 5], seed=3, **options) == whole
    # keys are what carries an item's seed: the second half without them is seeded as a first half
    if options.get("k") != 1 or options.get("shuffle", True):
        assert dicts(rm.score_batch(ITEMS[6:], seed=3, **options)) != whole[6:]
        assert dicts(rm.score_batch(ITEMS, seed=4, **options)) != whole
    if options.get("adaptive"):
        assert min(len(r["judgements"]) for r in whole) < 6 < max(len(r["judgements"]) for r in whole) + 1
    if options["k"] > 1 and options.get("temperature") != 0:
        assert any(r["n_retries"] for r in whole), "retries were exercised"


def test_string_keys_and_async_scoring_agree():
    rm = GRM(SeededBackend(), max_retries=1)
    ids = [f"item-{i}" for i in range(len(ITEMS))]
    whole = dicts(rm.score_batch(ITEMS, keys=ids, k=3, seed=0))
    assert in_pieces(rm, ITEMS, ids, [4, 8], k=3, seed=0) == whole
    assert dicts(asyncio.run(rm.ascore_batch(ITEMS[::-1], keys=ids[::-1], k=3, seed=0)))[::-1] == whole
    assert dicts(rm.score_batch(ITEMS, k=3, seed=0)) != whole  # "item-3" and 3 are different keys
    # score() is score_batch of one item under key 0
    assert rm.score(*ITEMS[5], k=3, seed=0).to_dict() == dicts(rm.score_batch(ITEMS[5:6], keys=[0], k=3, seed=0))[0]


@pytest.mark.parametrize(
    "keys, error",
    [
        ([0, 1], "one key per item: 3 items, 2 keys"),
        ("abc", "sequence of one integer or string"),
        ([0, 1.5, 2], "integer or a string, got float"),
        ([0, True, 2], "integer or a string, got bool"),
        ([0, None, 2], "integer or a string, got NoneType"),
    ],
)
def test_bad_keys_are_refused_by_name(keys, error):
    with pytest.raises((TypeError, ValueError), match=error):
        GRM(SeededBackend()).score_batch(ITEMS[:3], keys=keys, seed=0)


def test_item_seeds_are_the_same_in_every_process_and_for_every_integer_type():
    import numpy as np

    keys = [7, "7", "clé ⚙", 10**30]
    here = [item_seed(5, key) for key in keys]
    assert len(set(here)) == 4 and all(0 <= s < 2**31 for s in here)
    assert item_seed(5, np.int64(7)) == here[0] and item_seed(6, 7) != here[0]
    code = "from grm.seeding import item_seed; print([item_seed(5, k) for k in [7, '7', 'clé ⚙', 10**30]])"
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(here)


def test_an_item_rescored_alone_after_a_failed_batch_gets_what_the_batch_would_have_given():
    rm = GRM(SeededBackend())
    items = list(ITEMS[:6])
    items[2] = ("case:boom", ["x", "y"])
    results = score_isolated(rm, items, keys=list(range(10, 16)), k=3, seed=1)
    assert isinstance(results[2], ValueError)
    good = [i for i in range(6) if i != 2]
    expected = rm.score_batch([items[i] for i in good], keys=[10 + i for i in good], k=3, seed=1)
    assert [results[i].to_dict() for i in good] == dicts(expected)


# ---------------------------------------------------------------------------------------------------- transformers


def test_row_sampler_draws_each_row_from_its_own_stream_and_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0], dtype=torch.float64)
    logits = probs.log()  # -inf for the last token
    noise = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def picks(sampler, rows):
        out = sampler(None, rows.clone())
        assert torch.all((out == 0).sum(-1) == 1) and torch.all((out == 0) | (out == -torch.inf))
        return out.argmax(-1).tolist()

    alone, beside = RowSampler(1.0, 1.0, [7]), RowSampler(1.0, 1.0, [1, 7, 2])
    rows = torch.cat([noise[:1], logits[None], noise[1:]])
    steps = [(picks(alone, logits[None]), picks(beside, rows)) for _ in range(200)]
    assert all(a == [b[1]] for a, b in steps), "a row's picks depend on its seed and logits only"
    counts = Counter(picks(RowSampler(1.0, 1.0, range(4000)), logits.expand(4000, 5)))
    assert counts[4] == 0
    for token, p in enumerate(probs.tolist()[:4]):  # within 5 standard deviations of 4,000 draws
        assert abs(counts[token] / 4000 - p) < 5 * (p * (1 - p) / 4000) ** 0.5
    assert set(picks(RowSampler(1.0, 0.7, range(500)), logits.expand(500, 5))) == {0, 1}  # 0.5 + 0.3 reach 0.7
    with pytest.raises(ValueError, match="2 seeds for a batch of 3 rows"):
        RowSampler(1.0, 1.0, [1, 2])(None, rows)


@pytest.fixture(scope="module")
def exact_backends(random_lm_path):
    """The random tiny LM in float64, with forward batches of 1, 3 and 16 rows."""
    return {
        size: TransformersBackend(random_lm_path, dtype="float64", progress=False, batch_size=size)
        for size in (1, 3, 16)
    }


@pytest.mark.slow
@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 0.9), (0.0, 1.0)], ids=["T1", "nucleus", "greedy"])
def test_transformers_samples_depend_on_their_prompt_and_seed_only(exact_backends, temperature, top_p):
    def request(messages, n, seed):
        return GenerationRequest(messages, n, Sampling(temperature, 6, top_p, seed))

    def texts(size, requests):
        return [[c.text for c in out] for out in exact_backends[size].generate(requests)]

    prompts = [[{"role": "user", "content": q + " " + " ".join(rs)}] for q, rs in ITEMS[:4]]  # lengths differ
    requests = [request(m, 3, 100 * i) for i, m in enumerate(prompts)]
    whole = texts(3, requests)
    assert texts(16, requests[::-1])[::-1] == whole
    assert texts(1, requests) == whole  # no padding at all
    assert [texts(16, [r])[0] for r in requests] == whole, "each request alone"
    if temperature == 0:
        assert all(len(set(t)) == 1 for t in whole)
        return
    assert all(len(set(t)) > 1 for t in whole), "the random LM's samples differ unless seeded alike"
    # sample i of a request seeded s is the request seeded s + i (vLLM's convention)
    assert [t for [t] in texts(3, [request(prompts[0], 1, i) for i in range(3)])] == whole[0]


@pytest.mark.slow
def test_transformers_scoring_is_batch_invariant_greedy_and_sampled(exact_backends):
    rm = GRM(exact_backends[3], "synthetic", max_new_tokens=4)  # the compact template: short prompts
    other = GRM(exact_backends[16], "synthetic", max_new_tokens=4)
    for k in (2, 1):
        whole = assert_batch_invariant(rm, ITEMS[:6], k=k, seed=3)
        assert dicts(other.score_batch(ITEMS[:6], k=k, seed=3)) == whole


# ---------------------------------------------------------------------------------------------------- HTTP


@pytest.mark.slow
def test_http_backend_with_a_seeded_server_is_batch_invariant():
    with FaultServer({"default": ["seeded"]}, seeded_judge) as server:
        by_n = GRM.from_openai(server.url, "m", max_retries=1, progress=False)
        one_by_one = GRM.from_openai(server.url, "m", max_retries=1, progress=False, use_n=False)
        whole = assert_batch_invariant(by_n, ITEMS, k=3, seed=8)
        assert dicts(asyncio.run(by_n.ascore_batch(ITEMS, k=3, seed=8))) == whole
        assert any(p.get("n", 1) > 1 for p in server.payloads) and any(r["n_retries"] for r in whole)
        singles = dicts(one_by_one.score_batch(ITEMS, k=3, seed=8))
        for reward in singles + whole:  # a choice of n= has no token count of its own
            for j in reward["judgements"]:
                j["n_tokens"] = None
        assert singles == whole, "n= or single requests alike"


# ---------------------------------------------------------------------------------------------------- reward server


PROMPTS = ["A long query to score: ", "Another one: ", "And a third: "]


def test_a_seeded_server_request_gets_its_own_result_whatever_shares_its_batch():
    rm = GRM(SeededBackend())
    app_server = AppServer(create_app(rm, ServerConfig(batch_window_s=0.3)))
    try:

        async def load():
            async with httpx.AsyncClient(base_url=app_server.url, timeout=30) as client:
                scores = [
                    client.post("/score", json={"query": q, "responses": r, "k": 3, "seed": 5}) for q, r in ITEMS[:6]
                ]
                reward = client.post(
                    "/get_reward", json={"query": [p + "!" for p in PROMPTS], "prompts": PROMPTS, "k": 3, "seed": 5}
                )
                return await asyncio.gather(*scores, reward), (await client.get("/health")).json()

        answers, health = asyncio.run(load())
    finally:
        app_server.stop()
    assert health["largest_batch"] > 1, "requests were batched together"
    for (q, r), answer in zip(ITEMS[:6], answers):
        alone = rm.score(q, r, k=3, seed=5)
        expected_answer = {**alone.to_dict(), "normalized": alone.normalized(rm.score_range), "n_drawn": alone.n_drawn}
        assert answer.json() == expected_answer
    expected = rm.score_batch([(p, ["!"]) for p in PROMPTS], k=3, seed=5)
    assert answers[-1].json()["rewards"] == [r.normalized(rm.score_range)[0] for r in expected]


# ---------------------------------------------------------------------------------------------------- grm score


def interrupting_generate(calls: int):
    """A TransformersBackend.generate that raises KeyboardInterrupt on its ``calls``-th call (a Ctrl-C)."""
    original, made = TransformersBackend.generate, []

    def generate(self, requests):
        made.append(len(requests))
        if len(made) == calls:
            raise KeyboardInterrupt
        return original(self, requests)

    return generate


@pytest.mark.slow
def test_an_interrupted_and_resumed_grm_score_equals_an_uninterrupted_one(random_lm_path, tmp_path, monkeypatch):
    inp = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": f"r{i}", "query": q, "responses": r}) for i, (q, r) in enumerate(ITEMS[:5])]
    inp.write_text("\n".join(lines) + "\n")

    def score(out, *extra):
        args = ["score", "--model", random_lm_path, "--dtype", "float64", "--template", "synthetic"]
        args += ["--input", str(inp), "--output", str(out)]
        return main([*args, "--max-new-tokens", "3", "--seed", "4", *extra])

    def rows(out):
        return sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda row: row["index"])

    for k in ("2", "1"):
        whole = tmp_path / f"whole-{k}.jsonl"
        assert score(whole, "-k", k, "--chunk-size", "5", "--batch-size", "16") == 0
        resumed = tmp_path / f"resumed-{k}.jsonl"
        with monkeypatch.context() as m:
            m.setattr(TransformersBackend, "generate", interrupting_generate(2))
            assert score(resumed, "-k", k, "--chunk-size", "2", "--batch-size", "3") == 130  # Ctrl-C's exit code
        assert len(rows(resumed)) == 2  # one chunk of two rows was written before the interruption
        assert score(resumed, "-k", k, "--chunk-size", "3", "--batch-size", "4") == 0
        assert rows(resumed) == rows(whole) and len(rows(whole)) == 5


# ---------------------------------------------------------------------------------------------------- vLLM


@pytest.mark.slow
def test_vllm_scoring_is_batch_invariant(random_lm_path):
    for key, value in VLLM_ENV.items():
        os.environ.setdefault(key, value)
    from grm.backends.vllm import VLLMBackend

    backend = VLLMBackend(random_lm_path, progress=False, seed=0, **ENGINE_ARGS)
    try:
        rm = GRM(backend, "synthetic", max_new_tokens=8)
        whole = assert_batch_invariant(rm, ITEMS[:8], k=2, seed=3, temperature=1.0)
        assert len({j["text"] for r in whole for j in r["judgements"]}) > 8, "the random LM's samples differ"
    finally:
        backend.close()
