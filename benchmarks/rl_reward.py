"""RL rewards through ``grm serve``: per-sample judging against buffered-group judging, side by side on the same
rollouts, as an RL framework that calls the reward once per sample (OpenRLHF's ``/get_reward``) sends them.

- **Per sample** (``group_size=0``): each rollout judged alone, pointwise.
- **Buffered group** (``--group-size G``): the server holds a prompt's rollouts until all G have arrived and judges
  them together, listwise (chunks of at most 8).

For each: judgements drawn, generated tokens and wall time per rollout reward. Then the server's added latency per
request (a one-item request through the server against the same item scored directly with ``score_batch``, one after
another), and whether two interleavings of the same rollouts (shuffled differently, fresh servers, same seed) get
identical rewards.

The engine is scripted (``--engine scripted``, the default): its judgements are as long as an SPCT judgement
(``--principle-tokens`` of criteria plus ``--analysis-tokens`` per response judged, plus the scores), and it takes
``--call-ms`` per call plus ``--token-us`` per generated token (a throughput-bound engine), so that the comparison
measures what grm sends, not the machine. ``--engine shipped`` runs the shipped default GRM instead (transformers,
on the synthetic task it judges, groups of 4; slow on a CPU: use few prompts).

    python benchmarks/rl_reward.py [--prompts 32] [--group-size 8] [-k 4] [--engine scripted|shipped]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import re
import statistics
import time

import httpx
from server import run_server  # benchmarks/server.py: the same local uvicorn server

from grm import GRM, Item, ScoringOptions
from grm.backends import Completion
from grm.integrations.chat import ChatMarkers, detemplate
from grm.integrations.groups import Sample, sample_key
from grm.server import ServerConfig, create_app

SHOWN = re.compile(r"\[The Start of Response \d+\]\n(.*?)\n\[The End of Response \d+\]", re.S)


class ScriptedEngine:
    """Judgements of SPCT's length: ``principles`` tokens, ``analysis`` tokens per response judged, the scores
    (each a seeded function of the response); ``call_s`` per call plus ``token_s`` per generated token."""

    def __init__(self, principles: int, analysis: int, call_s: float, token_s: float) -> None:
        self.principles, self.analysis, self.call_s, self.token_s = principles, analysis, call_s, token_s

    def generate(self, requests):
        out, tokens = [], 0
        for r in requests:
            shown = SHOWN.findall(r.messages[-1]["content"])
            n = self.principles + self.analysis * len(shown) + 2 * len(shown)
            seeds = [None] * r.n if r.sampling.temperature == 0 else [r.sampling.seed + j for j in range(r.n)]
            texts = []
            for seed in seeds:
                scores = [1 + int(hashlib.sha256(f"{x}|{seed}".encode()).hexdigest(), 16) % 10 for x in shown]
                texts.append(
                    "Analysis:\n"
                    + "w " * (n - 2 * len(shown))
                    + "\n\nScores: \\boxed{"
                    + ", ".join(map(str, scores))
                    + "}"
                )
            out.append([Completion(t, n, "stop") for t in texts])
            tokens += n * r.n
        time.sleep(self.call_s + self.token_s * tokens)
        return out


class Counting:
    """Counts the judgements and generated tokens of a backend."""

    def __init__(self, backend) -> None:
        self.backend, self.judgements, self.tokens = backend, 0, 0

    def generate(self, requests):
        out = self.backend.generate(requests)
        self.judgements += sum(len(c) for c in out)
        self.tokens += sum(x.n_tokens or 0 for c in out for x in c)
        return out


def chatml(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def rollouts(prompts: int, group: int) -> list[tuple[str, str]]:
    """(prompt, response) pairs, a ChatML prompt and its group of responses, as a policy would write them."""
    rng = random.Random(0)
    words = "the answer is clearly seven because each step adds two and we started from one so".split()
    out = []
    for p in range(prompts):
        prompt = chatml(f"Question {p}: explain your reasoning briefly.")
        for _ in range(group):
            out.append((prompt, " ".join(rng.choices(words, k=rng.randint(5, 40)))))
    return out


def synthetic_rollouts(prompts: int) -> list[tuple[str, str]]:
    """Groups of 4 from the synthetic task the shipped GRM judges (a question, four candidate answers)."""
    from grm.synthetic import make_examples

    examples = make_examples(prompts, seed=0, response_weights=(0, 0, 0, 1))
    return [(chatml(e.query), r) for e in examples for r in e.responses]


def openrlhf_body(prompt: str, response: str) -> dict:
    return {"query": [prompt + response + "<|im_end|>"], "prompts": [prompt], "labels": [None]}


async def post_all(url: str, bodies: list[dict]) -> list[float]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=3600, limits=limits) as client:
        replies = await asyncio.gather(*(client.post("/get_reward", json=b) for b in bodies))
    for r in replies:
        r.raise_for_status()
    return [r.json()["rewards"][0] for r in replies]


def judge_through_server(rm_factory, config: ServerConfig, pairs, order) -> dict:
    """Every rollout's reward, posted concurrently in ``order``; the engine's counts and the wall time."""
    rm = rm_factory()
    backend = rm.backend
    server, thread, url = run_server(create_app(rm, config))
    try:
        t = time.perf_counter()
        rewards = asyncio.run(post_all(url, [openrlhf_body(*pairs[i]) for i in order]))
        wall = time.perf_counter() - t
    finally:
        server.should_exit = True
        thread.join()
    by_rollout = {i: r for i, r in zip(order, rewards)}
    return {
        "rewards": [by_rollout[i] for i in range(len(pairs))],
        "judgements": backend.judgements,
        "tokens": backend.tokens,
        "wall": wall,
    }


def added_latency(rm_factory, k: int, pairs, n: int) -> tuple[float, float]:
    """(median latency through the server, median of the same item scored directly), one request at a time."""
    rm = rm_factory()
    server, thread, url = run_server(create_app(rm, ServerConfig(seed=0, default_k=k, cache_size=0)))
    through, direct = [], []
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            for prompt, response in pairs[:n]:
                t = time.perf_counter()
                client.post("/get_reward", json=openrlhf_body(prompt, response)).raise_for_status()
                through.append(time.perf_counter() - t)
                messages, text = detemplate(prompt, prompt + response + "<|im_end|>", ChatMarkers())
                key = sample_key(Sample(messages, text))  # the server's key: the same judgement, drawn again
                t = time.perf_counter()
                rm.score_batch([Item(messages, [text])], ScoringOptions(k=k, seed=0), keys=[key])
                direct.append(time.perf_counter() - t)
    finally:
        server.should_exit = True
        thread.join()
    return statistics.median(through), statistics.median(direct)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--engine", choices=["scripted", "shipped"], default="scripted")
    ap.add_argument("--principle-tokens", type=int, default=120)
    ap.add_argument("--analysis-tokens", type=int, default=60)
    ap.add_argument("--call-ms", type=float, default=50.0)
    ap.add_argument("--token-us", type=float, default=20.0, help="engine time per generated token, microseconds")
    ap.add_argument("--latency-requests", type=int, default=20)
    args = ap.parse_args()
    if args.engine == "shipped":
        shipped = GRM.from_pretrained(progress=False)
        args.group_size = 4

        def factory() -> GRM:
            return GRM(
                Counting(shipped.backend),
                shipped.template,
                judge=shipped.judge,
                score_range=shipped.score_range,
                max_new_tokens=shipped.max_new_tokens,
            )

        pairs = synthetic_rollouts(args.prompts)
    else:

        def factory() -> GRM:
            engine = ScriptedEngine(
                args.principle_tokens, args.analysis_tokens, args.call_ms / 1e3, args.token_us / 1e6
            )
            return GRM(Counting(engine), max_new_tokens=512)

        pairs = rollouts(args.prompts, args.group_size)
    n = len(pairs)
    order = list(range(n))
    common = {"seed": 0, "default_k": args.k, "max_in_flight": max(512, n)}
    modes = {
        "per sample": ServerConfig(**common),
        "buffered group": ServerConfig(**common, group_size=args.group_size, group_wait_s=60.0),
    }
    results = {name: judge_through_server(factory, config, pairs, order) for name, config in modes.items()}
    print(f"{args.prompts} prompts x group {args.group_size} = {n} rollouts, k = {args.k}, engine: {args.engine}")
    print("| judging | judgements | generated tokens | tokens per reward | wall per reward (ms) |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['judgements']:,} | {r['tokens']:,} | {r['tokens'] / n:,.0f} | {1000 * r['wall'] / n:.1f} |"
        )
    per, grouped = results["per sample"], results["buffered group"]
    print(
        f"per sample / buffered group: judgements {per['judgements'] / grouped['judgements']:.1f}x, tokens "
        f"{per['tokens'] / grouped['tokens']:.2f}x, wall {per['wall'] / grouped['wall']:.2f}x"
    )
    shuffled = random.Random(1).sample(order, n)
    again = judge_through_server(factory, modes["buffered group"], pairs, shuffled)
    same = sum(a == b for a, b in zip(grouped["rewards"], again["rewards"]))
    print(f"two interleavings (in order, shuffled), buffered group: {same}/{n} rewards identical")
    through, direct = added_latency(factory, args.k, pairs, args.latency_requests)
    print(
        f"server's added latency per request: {1000 * (through - direct):.1f} ms "
        f"(median {1000 * through:.1f} ms through the server, {1000 * direct:.1f} ms scored directly)"
    )


if __name__ == "__main__":
    main()
