"""Adaptive compute against fixed-k voting, side by side on the same sample stream.

Rules compared with fixed k (default 32): ``adaptive`` with the exact rule (``risk=0``), the risk rule at several
risks, and batch budgets (a fraction of k x items). For each: how often the chosen best response agrees with fixed
k, accuracy against ground truth (95% Wilson interval, and the paired difference to fixed k with a 95% interval),
and tokens spent relative to fixed k.

(a) ``scripted``: a noisy judge on synthetic items (2-4 responses whose true quality differs by a random gap); each
    sample's score for a response is its quality plus seeded noise, at several noise levels. A sample slot gets
    the same scores however it is drawn.
(b) ``grm``: the shipped GRM (``GRM.from_pretrained()``) on held-out synthetic items (``grm.synthetic``, seed 1000,
    items with 2-4 responses). Its k samples per item are drawn once with fixed-k scoring and recorded
    (``--stream``: drawn if the file is missing, else read); every rule is then replayed on that recording, so
    each sample slot an adaptive rule draws is the completion fixed k drew for it.

    python benchmarks/adaptive_voting.py scripted [--items 500] [--noise 0.75 1.5 3]
    python benchmarks/adaptive_voting.py grm --stream stream.jsonl [--items 500] [--backend vllm] [--max-minutes 12]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from grm import GRM, Completion
from grm.backends import GenerationRequest

QUERY = re.compile(r"\[The Start of Query\]\n(.*?)\n\[The End of Query\]", re.S)
RESPONSE = re.compile(r"^\[The Start of Response \d+\]\n(.*?)\n\[The End of Response \d+\]$", re.S | re.M)
RISKS = (0.001, 0.01, 0.05)
BUDGETS = (0.25, 0.5)
Z95 = 1.959964


class NoisyJudge:
    """Backend: a sample scores each shown response by its quality + noise. The noise is seeded by the query, the
    response order shown and how many samples of that order came before, so a sample slot gets the same scores
    whether it is drawn in one batch or in rounds."""

    def __init__(self, quality: dict[str, float], noise: float, tokens: int) -> None:
        self.quality, self.noise, self.tokens = quality, noise, tokens
        self.drawn: Counter[tuple[str, ...]] = Counter()

    def generate(self, requests):
        out = []
        for req in requests:
            text = req.messages[-1]["content"]
            shown = RESPONSE.findall(text)
            key = (QUERY.search(text).group(1), *shown)
            completions = []
            for _ in range(req.n):
                rng = random.Random(f"{key}:{self.drawn[key]}")
                self.drawn[key] += 1
                scores = [min(10, max(1, round(self.quality[r] + rng.gauss(0, self.noise)))) for r in shown]
                completions.append(
                    Completion("Scores: \\boxed{" + ", ".join(map(str, scores)) + "}", self.tokens, "stop")
                )
            out.append(completions)
        return out


def prompt_key(request: GenerationRequest) -> str:
    return hashlib.sha1(json.dumps([request.messages, request.prefix]).encode()).hexdigest()


class Recorder:
    """A backend passing requests on to ``backend`` and appending each request's completions to ``path`` (JSONL)."""

    def __init__(self, backend, path: Path) -> None:
        self.backend, self.path = backend, path

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        out = self.backend.generate(requests)
        with self.path.open("a") as f:
            for request, completions in zip(requests, out):
                rows = [[c.text, c.n_tokens, c.finish_reason, c.error] for c in completions]
                f.write(json.dumps({"key": prompt_key(request), "completions": rows}) + "\n")
        return out


class Replay:
    """A backend answering each prompt with its recorded completions, in recorded order."""

    def __init__(self, stream: dict[str, list[Completion]]) -> None:
        self.stream, self.used = stream, Counter()

    @classmethod
    def read(cls, path: Path) -> dict[str, list[Completion]]:
        stream: dict[str, list[Completion]] = defaultdict(list)
        with path.open() as f:
            for line in f:
                row = json.loads(line)
                stream[row["key"]] += [Completion(t, n, r, e) for t, n, r, e in row["completions"]]
        return stream

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        out = []
        for request in requests:
            key, start = prompt_key(request), self.used[prompt_key(request)]
            if start + request.n > len(self.stream[key]):
                raise KeyError(f"the recorded stream has no sample {start + request.n} of prompt {key}")
            self.used[key] += request.n
            out.append(self.stream[key][start : start + request.n])
        return out


def rules(k: int, n_items: int) -> dict[str, dict]:
    """Each rule's scoring options beside fixed k."""
    out: dict[str, dict] = {f"fixed k={k}": {}, "exact (risk=0)": {"adaptive": True}}
    out |= {f"risk={r:g}": {"adaptive": True, "risk": r} for r in RISKS}
    out |= {f"budget {b:.0%}": {"budget": round(b * k * n_items)} for b in BUDGETS}
    return out


def compare(make_backend, rm_of, items, truths, k: int, round_size: int) -> list[dict]:
    """Score ``items`` under every rule (a fresh backend from ``make_backend()`` each) and summarise."""
    rows, fixed = [], None
    for name, options in rules(k, len(items)).items():
        rm = rm_of(make_backend())
        start = time.perf_counter()
        rewards = rm.score_batch(items, k=k, seed=0, adaptive_round=round_size, **options)
        seconds = time.perf_counter() - start
        best = [r.best for r in rewards]
        right = [b is not None and b == t.index(max(t)) for b, t in zip(best, truths)]
        tokens = sum(j.n_tokens or 0 for r in rewards for j in r.judgements)
        samples = sum(len(r.judgements) for r in rewards)
        if fixed is None:
            fixed = {"best": best, "right": right, "tokens": tokens}
        agree = sum(a == b for a, b in zip(best, fixed["best"]))
        diff, half = paired_difference(right, fixed["right"])
        lo, hi = wilson(sum(right), len(right))
        rows.append(
            {
                "rule": name,
                "agree": agree / len(items),
                "accuracy": sum(right) / len(right),
                "interval": (lo, hi),
                "diff": diff,
                "diff_half": half,
                "tokens": tokens / fixed["tokens"],
                "samples": samples / len(items),
                "seconds": seconds,
            }
        )
    return rows


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def paired_difference(a: Sequence[bool], b: Sequence[bool]) -> tuple[float, float]:
    """Mean of ``a - b`` over paired items and the half-width of its 95% normal interval."""
    d = [int(x) - int(y) for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    return mean, Z95 * math.sqrt(var / n)


def table(rows: list[dict]) -> str:
    lines = [
        "| rule | agreement with fixed k | accuracy (95% CI) | accuracy - fixed (95% CI) | tokens vs fixed | "
        "samples/item |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lo, hi = r["interval"]
        lines.append(
            f"| {r['rule']} | {r['agree']:.1%} | {r['accuracy']:.1%} ({lo:.1%}-{hi:.1%}) | "
            f"{100 * r['diff']:+.1f} ± {100 * r['diff_half']:.1f} pt | {r['tokens']:.1%} | {r['samples']:.1f} |"
        )
    return "\n".join(lines)


def scripted(args: argparse.Namespace) -> None:
    rng = random.Random(0)
    items, truths, quality = [], [], {}
    for i in range(args.items):
        n = rng.randint(2, 4)
        responses = [f"item {i} response {r}" for r in range(n)]
        base = rng.uniform(3, 7)
        truth = [base + (rng.uniform(0, 4) if r == 0 else rng.uniform(-1, 1)) for r in range(n)]
        quality |= dict(zip(responses, truth))
        items.append((f"question {i}", responses))
        truths.append(truth)
    for noise in args.noise:
        print(f"\n(a) scripted noisy judge: {args.items} items, k={args.k}, rounds of {args.round}, noise sd {noise}")
        rows = compare(
            lambda noise=noise: NoisyJudge(quality, noise, args.tokens), GRM, items, truths, args.k, args.round
        )
        print(table(rows))


def shipped(args: argparse.Namespace) -> None:
    from grm.assets import default_grm_path, read_grm_config
    from grm.synthetic import make_examples

    examples = [e for e in make_examples(3 * args.items, 1000) if len(e.responses) >= 2][: args.items]
    stream_path = Path(args.stream)
    meta_path = stream_path.with_suffix(".meta.json")
    if not stream_path.exists():
        draw(examples, stream_path, meta_path, args)
    meta = json.loads(meta_path.read_text())
    examples = examples[: meta["items"]]
    items = [(e.query, e.responses) for e in examples]
    config = read_grm_config(args.model or default_grm_path())
    stream = Replay.read(stream_path)

    def replayed(backend) -> GRM:
        return GRM(backend, config["template"], score_range=config["score_range"])

    print(f"\n(b) shipped GRM (grm/assets/default_grm at commit {meta['model']}), {len(items)} held-out items with 2-4")
    print(f"responses (seed 1000), k={args.k}, rounds of {args.round}, replayed from {stream_path}")
    print(f"drawing the stream took {meta['seconds']:.0f} s ({meta['backend']} backend)")
    rows = compare(lambda: Replay(stream), replayed, items, [e.truth for e in examples], args.k, args.round)
    print(table(rows))


def draw(examples, stream_path: Path, meta_path: Path, args: argparse.Namespace) -> None:
    """Draw the k samples of ``examples`` with fixed-k scoring, in chunks (keyed by index), recording them; stop
    starting chunks after ``--max-minutes``."""
    import subprocess

    commit = subprocess.run(
        ["git", "log", "-1", "--format=%h", "--", "grm/assets/default_grm"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.strip()
    engine: dict = {}
    if args.backend == "vllm":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        engine = {"dtype": "float32", "enforce_eager": True, "max_model_len": 512}
    rm = GRM.from_pretrained(args.model, args.backend, progress=False, **engine)
    rm.backend = Recorder(rm.backend, stream_path)
    start, done = time.perf_counter(), 0
    with tqdm(total=len(examples), desc="drawing the stream", unit="item") as bar:
        while done < len(examples) and time.perf_counter() - start < 60 * args.max_minutes:
            chunk = examples[done : done + args.chunk]
            rm.score_batch(
                [(e.query, e.responses) for e in chunk], k=args.k, seed=0, keys=range(done, done + len(chunk))
            )
            done += len(chunk)
            bar.update(len(chunk))
    meta = {"items": done, "model": commit, "backend": args.backend, "seconds": time.perf_counter() - start}
    meta_path.write_text(json.dumps(meta))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="part", required=True)
    a = sub.add_parser("scripted", help="(a) the scripted noisy judge")
    a.add_argument("--noise", type=float, nargs="+", default=[0.75, 1.5, 3.0])
    a.add_argument("--tokens", type=int, default=300, help="generated tokens per judgement")
    b = sub.add_parser("grm", help="(b) the shipped GRM's own samples")
    b.add_argument("--stream", required=True, help="JSONL recording of the k samples (drawn if missing)")
    b.add_argument("--model", default=None, help="GRM to draw with (default: the shipped one)")
    b.add_argument("--backend", default="vllm")
    b.add_argument("--chunk", type=int, default=50, help="items per drawing call")
    b.add_argument("--max-minutes", type=float, default=12.0, help="stop drawing new chunks after this long")
    for p in (a, b):
        p.add_argument("--items", type=int, default=500)
        p.add_argument("--k", type=int, default=32)
        p.add_argument("--round", type=int, default=4)
    args = ap.parse_args()
    scripted(args) if args.part == "scripted" else shipped(args)


if __name__ == "__main__":
    main()
