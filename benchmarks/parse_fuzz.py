"""Time per parse of degenerate model outputs: grm's parser against a baseline version of it, side by side.

Adversarial families (:func:`families`): whitespace runs, nested braces, many boxes, long digit strings and
1 MB mixtures, each at sizes growing tenfold. Every input is parsed by the current ``grm.parsing`` in this
process and by the baseline (``grm/parsing.py`` at ``--baseline`` in this repository's git history) in a
subprocess killed after ``--timeout`` seconds (counted as that long). Prints p50 / p99 / max seconds per parse
for each family and overall (and how many inputs the baseline raised on, or was stopped on). Usage:

    python benchmarks/parse_fuzz.py [--baseline 4aa61f9] [--timeout 10] [--max-size 1000000]

``tests/test_parsing.py`` parses the same families with a per-input time bound.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)
SCORES = "\nScores: \\boxed{7, 3}"


def families(max_size: int = 1_000_000) -> Iterator[tuple[str, str]]:
    """``(family, text)`` for each adversarial family at each size up to ``max_size`` characters."""
    for size in (s for s in SIZES if s <= max_size):
        n = size
        yield "whitespace", "1." + " " * n + SCORES
        yield "whitespace", "1. **A**" + " " * n + "(Weight: 40%)" + SCORES
        yield "whitespace", "Specific Criteria:\n" + "\n" * n + "- " + "\t" * n + SCORES
        yield "whitespace", "Scores: \\boxed{7" + " " * n + "x}"
        yield "whitespace", "Analysis:" + " \n" * (n // 2) + "\\boxed {7,  3}"
        yield "nested braces", "\\boxed{" + "{" * (n // 2) + "}" * (n // 2) + "}"
        yield "nested braces", "Scores: \\boxed{" + "{" * n
        yield "nested braces", "\\boxed{\\text{" * (n // 13) + "7"
        yield "many boxes", "\\boxed{7} " * (n // 10) + SCORES
        yield "many boxes", "\\boxed " * (n // 7) + "\\boxed{"
        yield "many boxes", "1. A (Weight: 50%): \\boxed{1}\n" * (n // 30)
        yield "long digits", "Scores: \\boxed{" + "9" * n + ", 3}"
        yield "long digits", "1. A (Weight: " + "9" * n + "%): x" + SCORES
        yield "long digits", "1" * n + ". A (Weight: 40%)" + SCORES
        if size == max(s for s in SIZES if s <= max_size):
            unit = "1. **A** (Weight: 40%): x \\boxed{1} {{ }} \n\n  - * 123 Scores: Analysis:\t"
            yield "1 MB mix", (unit * (size // len(unit) + 1))[:size]
            yield "1 MB mix", ("- " * 7 + "1. " * 5 + " " * 9 + "\n") * (size // 40)


_WORKER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from baseline_parsing import parse_judgement
text = open(sys.argv[2], encoding="utf-8").read()
start = time.perf_counter()
try:
    parse_judgement(text, 2)
    raised = 0
except Exception:
    raised = 1
print(time.perf_counter() - start, raised)
"""


def baseline_seconds(folder: Path, text: str, timeout: float) -> tuple[float, bool]:
    """Seconds the baseline parser takes on ``text`` (``timeout`` if it is still running then), and whether it
    raised."""
    path = folder / "input.txt"
    path.write_text(text, encoding="utf-8")
    try:
        out = subprocess.run(
            [sys.executable, "-c", _WORKER, str(folder), str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return timeout, False
    seconds, raised = out.stdout.split()[-2:]
    return float(seconds), raised == "1"


def current_seconds(text: str) -> float:
    from grm.parsing import parse_judgement

    start = time.perf_counter()
    parse_judgement(text, 2)
    return time.perf_counter() - start


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.4f} s  p99 {p99:.4f} s  max {ordered[-1]:.4f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="4aa61f9", help="git revision of the baseline grm/parsing.py")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds before a baseline parse is stopped")
    ap.add_argument("--max-size", type=int, default=1_000_000, help="largest input, in characters")
    args = ap.parse_args()
    source = subprocess.run(
        ["git", "show", f"{args.baseline}:grm/parsing.py"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    rows: dict[str, tuple[list[float], list[float]]] = {}
    raised: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "baseline_parsing.py").write_text(source, encoding="utf-8")
        for family, text in families(args.max_size):
            now, before = rows.setdefault(family, ([], []))
            now.append(current_seconds(text))
            seconds, failed = baseline_seconds(folder, text, args.timeout)
            before.append(seconds)
            raised[family] = raised.get(family, 0) + failed
            note = " (raised)" if failed else ""
            print(
                f"{family:14s} {len(text):>9,d} chars: now {now[-1]:.4f} s, baseline {seconds:.4f} s{note}", flush=True
            )
    print(f"\nseconds per parse (baseline {args.baseline}, stopped at {args.timeout:g} s)")
    raised["all"] = sum(raised.values())
    for family, (now, before) in [*rows.items(), ("all", tuple(sum(r, []) for r in zip(*rows.values())))]:
        stopped = sum(t >= args.timeout for t in before)
        print(
            f"{family:14s} n={len(now):3d}  now: {summary(now)}  |  baseline: {summary(before)} "
            f"({stopped} stopped, {raised[family]} raised)"
        )


if __name__ == "__main__":
    main()
