"""What grm eval's metrics cost next to the generation of the judgements they read, side by side in one run.

(a) Generation: the shipped GRM (``GRM.from_pretrained()``, vLLM backend unless ``--backend``) judges ``--gen-items``
    held-out synthetic items k times each; seconds per judgement.
(b) Metrics: ``score_judged`` (Voting@1..k with ``--draws`` draws per k, and ``--bootstrap`` resamples for the
    intervals) on ``--items`` items of 2-4 responses with k random judgements each, timed for each k given; seconds
    per judgement read.

The ratio (b) / (a) per judgement is what carries over to other machines.

    python benchmarks/eval_metrics.py [--items 3000] [--k 8 32] [--gen-items 50] [--backend vllm]
"""

from __future__ import annotations

import argparse
import os
import random
import time

from grm import GRM, Judgement
from grm.eval import get_benchmark
from grm.eval.metrics import Judged
from grm.eval.runner import score_judged
from grm.synthetic import make_examples


def judged_items(n: int, k: int, seed: int = 0) -> list[Judged]:
    """``n`` synthetic items of 2-4 responses, each with ``k`` judgements of random 1-10 scores."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        width = rng.randint(2, 4)
        truth = [9.0] + [2.0] * (width - 1)
        judgements = [Judgement(text="", scores=[rng.randint(1, 10) for _ in range(width)]) for _ in range(k)]
        out.append(Judged(f"kind{i % 4}", truth, judgements, id=str(i), lengths=[10] * width))
    return out


def generation(args: argparse.Namespace, k: int) -> float:
    """Seconds per judgement of the shipped GRM on held-out items (the engine's start not counted)."""
    engine: dict = {}
    if args.backend == "vllm":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        engine = {"dtype": "float32", "enforce_eager": True, "max_model_len": 512}
    rm = GRM.from_pretrained(None, args.backend, progress=False, **engine)
    items = [(e.query, e.responses) for e in make_examples(3 * args.gen_items, 1000) if len(e.responses) > 1]
    items = items[: args.gen_items]
    rm.score_batch(items[:2], k=2, seed=1)  # warm-up
    start = time.perf_counter()
    rm.score_batch(items, k=k, seed=0)
    return (time.perf_counter() - start) / (len(items) * k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--k", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--gen-items", type=int, default=50)
    ap.add_argument("--backend", default="vllm")
    args = ap.parse_args()
    bench = get_benchmark("synthetic")
    per_generated = generation(args, 8)
    print(f"(a) generation: {1000 * per_generated:.1f} ms per judgement ({args.gen_items} items x 8, {args.backend})")
    print("| k | items | Voting@1..k, draws | bootstrap | metrics per judgement | metrics / generation |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k in args.k:
        judged = judged_items(args.items, k)
        start = time.perf_counter()
        score_judged(bench, judged, k=k, seed=0, draws=args.draws, n_bootstrap=0, progress=False)
        voting = time.perf_counter() - start
        start = time.perf_counter()
        score_judged(bench, judged, k=1, seed=0, draws=1, n_bootstrap=args.bootstrap, progress=False)
        bootstrap = time.perf_counter() - start
        per_read = (voting + bootstrap) / (args.items * k)
        print(
            f"| {k} | {args.items} | {voting:.1f} s ({args.draws} draws) | {bootstrap:.1f} s ({args.bootstrap}) | "
            f"{1000 * per_read:.3f} ms | {per_read / per_generated:.4f} |"
        )


if __name__ == "__main__":
    main()
