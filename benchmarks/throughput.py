"""Throughput of grm against the engine it drives, measured side by side in one run.

(a) ``grm``: ``GRM.score_batch(items, k)``: render, shuffle, one backend call, parse, vote.
(b) ``raw``: the engine alone on exactly the requests (a) sent: the same prompt ids, ``n``, sampling settings and
    seeds; prompts are tokenized before the clock starts. vLLM generates the same tokens as (a); transformers
    samples with ``model.generate``'s own sampler (one torch seed per batch), the fastest it samples.
(c) ``naive``: one engine request per sample, in a loop, rendered and parsed one by one: how judges built for
    one-off calls (prometheus-eval style) drive an engine.
(d) transformers only, ``rowseeded``: the rows of (b) through ``model.generate`` with grm's sampler, each row
    drawing from its own seeded stream (:class:`grm.backends.transformers.RowSampler`), as (a) does: the ratio
    rowseeded/raw is what batch-independent seeding costs.

A random tiny Qwen2 model is built locally (``--hidden/--layers/--heads`` set its size; vLLM's CPU attention needs
head dim ``hidden / heads`` >= 64). Reports judgements/s and generated tokens/s for each, and the ratios grm/raw
(goal >= 0.95), grm/naive (goal >= 3 for vLLM at k = 8) and rowseeded/raw. Each mode runs ``--repeats`` times,
interleaved; the best run counts, and vLLM's prefix cache is emptied before each run. On a machine shared with
other jobs, ``--clock cpu`` (transformers) times this process's CPU seconds, which their load inflates less than
elapsed ones. Usage:

    python benchmarks/throughput.py --backend vllm --items 32 --k 8 --max-new-tokens 64
    python benchmarks/throughput.py --backend transformers --device cuda --hidden 1024 --layers 12 --heads 16
    python benchmarks/throughput.py --backend transformers --items 4 --naive-items 1 --repeats 6 --clock cpu
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from typing import Any

from grm import GRM, parse_judgement
from grm.tiny import build_causal_lm

WORDS = "the cat sat on a mat and then ran far away to find some food in a big red house near trees".split()


class Recording:
    """Wraps a backend: keeps the requests of the last ``generate`` call."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.requests = backend, []

    def generate(self, requests):
        self.requests = list(requests)
        return self.backend.generate(requests)


def make_items(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    return [
        (
            " ".join(rng.choices(WORDS, k=15)) + "?",
            [" ".join(rng.choices(WORDS, k=60)) for _ in range(rng.randint(2, 4))],
        )
        for _ in range(n)
    ]


class VLLMRunner:
    """Raw and naive runs on the grm backend's own ``vllm.LLM`` engine."""

    def __init__(self, backend) -> None:
        self.backend, self.llm = backend, backend.llm
        self.engine_seconds = 0.0
        generate = self.llm.generate

        def timed(*args, **kwargs):  # adds up the time spent inside the engine, grm's calls included
            t = time.perf_counter()
            try:
                return generate(*args, **kwargs)
            finally:
                self.engine_seconds += time.perf_counter() - t

        self.llm.generate = timed

    def reset(self) -> None:
        """Empty the prefix cache, so that no run reuses the prefill of the run before it."""
        self.llm.reset_prefix_cache()

    def prepare(self, requests):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = self.backend.tokenizer(self.backend.prompt_texts(requests), add_special_tokens=False)["input_ids"]
        params = [
            SamplingParams(
                n=r.n, temperature=r.sampling.temperature, max_tokens=r.sampling.max_new_tokens, seed=r.sampling.seed
            )
            for r in requests
        ]
        return [TokensPrompt(prompt_token_ids=p) for p in ids], params

    def raw(self, prepared) -> tuple[int, int]:
        prompts, params = prepared
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        return sum(len(o.outputs) for o in outs), sum(len(c.token_ids) for o in outs for c in o.outputs)

    def one(self, messages, temperature, max_new, seed) -> tuple[str, int]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        text = self.backend.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.backend.tokenizer(text, add_special_tokens=False)["input_ids"]
        sp = SamplingParams(n=1, temperature=temperature, max_tokens=max_new, seed=seed)
        out = self.llm.generate([TokensPrompt(prompt_token_ids=ids)], sp, use_tqdm=False)[0].outputs[0]
        return out.text, len(out.token_ids)


class TransformersRunner:
    """Raw and naive runs on the grm backend's own model and tokenizer, with plain ``model.generate``."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.engine_seconds = None  # not measured: the backend calls the model once per chunk

    def reset(self) -> None:
        """Nothing is cached across calls."""

    def prepare(self, requests):
        rows = []  # as the backend orders them: one row per sample (seeded seed + i), sorted by prompt length
        for r in requests:
            ids = self.backend.prompt_ids(r.messages)
            rows += [(ids, r.sampling, r.sampling.seed + i) for i in range(r.n)]
        rows.sort(key=lambda row: len(row[0]))
        return rows

    def _generate(self, prompts, temperature, max_new, seed, row_seeds=None):
        """Sample with ``model.generate``'s own sampler seeded with ``seed``, or with ``row_seeds`` (one per row)
        through grm's :class:`RowSampler`."""
        import torch
        from transformers import LogitsProcessorList

        from grm.backends.transformers import RowSampler

        b = self.backend
        width = max(map(len, prompts))
        input_ids = torch.full((len(prompts), width), b.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
        if row_seeds is None:
            torch.manual_seed(seed)
            sampling = dict(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            sampler = LogitsProcessorList([RowSampler(temperature, 1.0, row_seeds)])
            sampling = dict(do_sample=False, temperature=None, top_p=None, top_k=None, logits_processor=sampler)
        with torch.inference_mode():
            out = b.model.generate(
                input_ids=input_ids.to(b.device),
                attention_mask=mask.to(b.device),
                max_new_tokens=max_new,
                pad_token_id=b.pad_id,
                eos_token_id=sorted(b.eos_ids),
                **sampling,
            )[:, width:].tolist()
        counts = []
        for row in out:
            stop = next((t for t, tok in enumerate(row) if tok in b.eos_ids), None)
            counts.append(len(row) if stop is None else stop + 1)
        return out, counts

    def raw(self, rows, row_seeded: bool = False) -> tuple[int, int]:
        tokens = 0
        for start in range(0, len(rows), self.backend.batch_size):
            chunk = rows[start : start + self.backend.batch_size]
            s = chunk[0][1]
            seeds = [seed for _, _, seed in chunk] if row_seeded else None
            tokens += sum(self._generate([r[0] for r in chunk], s.temperature, s.max_new_tokens, s.seed, seeds)[1])
        return len(rows), tokens

    def rowseeded(self, rows) -> tuple[int, int]:
        return self.raw(rows, row_seeded=True)

    def one(self, messages, temperature, max_new, seed) -> tuple[str, int]:
        out, counts = self._generate([self.backend.prompt_ids(messages)], temperature, max_new, seed)
        return self.backend.tokenizer.decode(out[0][: counts[0]], skip_special_tokens=True), counts[0]


def naive(rm: GRM, runner, items, k: int, max_new: int, seed: int) -> tuple[int, int]:
    """One engine request per sample: shuffle, render, generate, parse, for each of the k samples of each item."""
    rng = random.Random(seed)
    judgements = tokens = 0
    for query, responses in items:
        for _ in range(k):
            order = list(range(len(responses)))
            rng.shuffle(order)
            messages = rm.build_prompt(query, [responses[i] for i in order])
            text, n = runner.one(messages, 0.5, max_new, rng.randrange(2**31))
            parse_judgement(text, len(responses))
            judgements, tokens = judgements + 1, tokens + n
    return judgements, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["vllm", "transformers"], default="vllm")
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--naive-items", type=int, default=None, help="items for the naive loop (default: all)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--device", default=None, help="transformers: cpu, cuda, ...")
    ap.add_argument("--batch-size", type=int, default=64, help="transformers: sequences per forward batch")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed seconds; cpu (transformers only): this process's CPU seconds, all threads, which other "
        "processes' load on a shared machine inflates less",
    )
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.clock == "cpu" and args.backend != "transformers":
        ap.error("--clock cpu needs --backend transformers (vLLM generates in other processes)")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    items = make_items(args.items)
    path = tempfile.mkdtemp()
    texts = [q for q, _ in items] + [r for _, rs in items for r in rs] + ["Scores: \\boxed{1, 2}"]
    build_causal_lm(path, texts, hidden=args.hidden, layers=args.layers, heads=args.heads)
    if args.backend == "vllm":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
        from grm.backends.vllm import VLLMBackend

        engine_args: dict[str, Any] = {"dtype": "float32", "enforce_eager": True, "max_model_len": 2048}
        backend = VLLMBackend(path, progress=False, **engine_args)
        runner: Any = VLLMRunner(backend)
    else:
        from grm.backends.transformers import TransformersBackend

        backend = TransformersBackend(path, device=args.device, batch_size=args.batch_size, progress=False)
        runner = TransformersRunner(backend)
    recording = Recording(backend)
    rm = GRM(recording, max_new_tokens=args.max_new_tokens)
    rm.score_batch(items[:4], k=2, seed=99)  # warm-up
    naive_items = items[: args.naive_items or len(items)]

    best: dict[str, tuple[float, int, int]] = {}
    for rep in range(args.repeats):
        runner.reset()
        if runner.engine_seconds is not None:
            runner.engine_seconds = 0.0
        t = clock()
        rewards = rm.score_batch(items, k=args.k, seed=1)
        runs = {
            "grm": (
                clock() - t,
                len(items) * args.k,
                sum(j.n_tokens or 0 for r in rewards for j in r.judgements),
            )
        }
        grm_engine = runner.engine_seconds
        prepared = runner.prepare(recording.requests)
        runner.reset()
        t = clock()
        n, tokens = runner.raw(prepared)
        runs["raw"] = (clock() - t, n, tokens)
        if isinstance(runner, TransformersRunner):
            t = clock()
            n, tokens = runner.rowseeded(prepared)
            runs["rowseeded"] = (clock() - t, n, tokens)
        runner.reset()
        t = clock()
        n, tokens = naive(rm, runner, naive_items, args.k, args.max_new_tokens, seed=rep)
        runs["naive"] = (clock() - t, n, tokens)
        for name, (secs, n, tokens) in runs.items():
            inside = f" ({grm_engine:.2f} s of it in the engine)" if name == "grm" and grm_engine is not None else ""
            print(f"repeat {rep}: {name:5s} {n} judgements, {tokens} tokens in {secs:.2f} s{inside}")
            if name not in best or n / secs > best[name][1] / best[name][0]:
                best[name] = (secs, n, tokens)

    device = args.device or ("cpu" if args.backend == "vllm" else str(backend.device))
    print(
        f"\n{args.backend} on {device}: {args.items} items x k={args.k}, <= {args.max_new_tokens} new tokens, "
        f"model hidden={args.hidden} layers={args.layers}, {args.clock} seconds"
    )
    print(f"{'mode':6s} {'judgements/s':>13s} {'tokens/s':>10s} {'judgements':>11s} {'tokens':>8s} {'seconds':>8s}")
    result: dict[str, Any] = {"backend": args.backend, "device": device, "args": vars(args)}
    for name, (secs, n, tokens) in best.items():
        print(f"{name:6s} {n / secs:13.2f} {tokens / secs:10.1f} {n:11d} {tokens:8d} {secs:8.2f}")
        result[name] = {"judgements_per_s": n / secs, "tokens_per_s": tokens / secs, "judgements": n, "tokens": tokens}
    for other in ("raw", "naive"):
        for unit in ("judgements_per_s", "tokens_per_s"):
            result[f"grm/{other} {unit}"] = result["grm"][unit] / result[other][unit]
    print(
        f"grm/raw   = {result['grm/raw judgements_per_s']:.3f} (judgements/s), "
        f"{result['grm/raw tokens_per_s']:.3f} (tokens/s)   goal >= 0.95"
    )
    print(
        f"grm/naive = {result['grm/naive judgements_per_s']:.2f}x (judgements/s), "
        f"{result['grm/naive tokens_per_s']:.2f}x (tokens/s)   goal >= 3x on vLLM at k = 8"
    )
    if "rowseeded" in result:
        for unit in ("judgements_per_s", "tokens_per_s"):
            result[f"rowseeded/raw {unit}"] = result["rowseeded"][unit] / result["raw"][unit]
        print(
            f"rowseeded/raw = {result['rowseeded/raw judgements_per_s']:.3f} (judgements/s), "
            f"{result['rowseeded/raw tokens_per_s']:.3f} (tokens/s)   the cost of one random stream per row"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
