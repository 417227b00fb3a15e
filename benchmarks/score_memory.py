"""Peak memory of ``grm score`` as the input grows: does it stream, or hold the data?

Writes the same preference pairs (with ~1 KB of text each) as JSONL, a JSON array, parquet and CSV, 10,000 and
100,000 rows of each, and scores every file with ``grm score`` in a fresh process whose GRM is scripted (a backend
that answers at once, so the run measures grm's reading, scoring and writing, not a model). Each run reports its
peak RSS (``VmHWM``, Linux: the high-water mark of the process's resident memory); memory that stays flat has a
100k / 10k ratio near 1, while holding the rows would make it grow about tenfold. The parquet output (written at
the end from its JSONL cache) is measured on the JSONL input. Usage:

    python benchmarks/score_memory.py [--sizes 10000,100000] [--formats jsonl,json,parquet,csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORMATS = ("jsonl", "json", "parquet", "csv")
_SHOWN = re.compile(r"\[The Start of Response \d+\]")


def rows(n: int):
    """``n`` preference pairs, about 1 KB each."""
    filler = "lorem ipsum dolor sit amet " * 12
    for i in range(n):
        yield {
            "id": f"r{i}",
            "prompt": f"Question {i}: {filler}",
            "chosen": f"A careful answer {i}. {filler}",
            "rejected": f"A hasty answer {i}. {filler}",
        }


def write_input(fmt: str, n: int, path: Path) -> None:
    if fmt == "jsonl":
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows(n))
    elif fmt == "json":
        with open(path, "w") as f:
            f.write("[")
            for i, r in enumerate(rows(n)):
                f.write(("," if i else "") + json.dumps(r) + "\n")
            f.write("]")
    elif fmt == "csv":
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, ["id", "prompt", "chosen", "rejected"])
            writer.writeheader()
            writer.writerows(rows(n))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        batch: list[dict] = []
        with pq.ParquetWriter(path, pa.schema([(k, pa.string()) for k in ("id", "prompt", "chosen", "rejected")])) as w:
            for r in rows(n):
                batch.append(r)
                if len(batch) == 10_000:
                    w.write_table(pa.Table.from_pylist(batch))
                    batch = []
            if batch:
                w.write_table(pa.Table.from_pylist(batch))


class InstantBackend:
    """Answers every request at once with a judgement giving the first shown response 7, the others 4."""

    def generate(self, requests):
        from grm.backends.base import Completion

        out = []
        for r in requests:
            n = len(_SHOWN.findall(r.messages[-1]["content"]))
            text = "Specific Criteria:\n1. **Care** (Weight: 100%): care.\n\nAnalysis:\nOk.\n\nScores: \\boxed{"
            out.append([Completion(text + ", ".join(["7"] + ["4"] * (n - 1)) + "}", 30, "stop")] * r.n)
        return out


def child(inp: str, out: str) -> None:
    """One ``grm score`` run in this process; prints its peak RSS (MiB) and seconds as JSON."""
    import grm.cli
    import grm.flags
    from grm import GRM

    grm.flags.load_grm = lambda args, **overrides: GRM(InstantBackend())  # what grm score loads its GRM with
    t = time.perf_counter()
    code = grm.cli.main(["score", "--input", inp, "--output", out, "--chunk-size", "256", "--seed", "0"])
    peak = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")) / 1024
    print(json.dumps({"code": code, "peak_mib": peak, "seconds": time.perf_counter() - t}))


def run(inp: Path, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(inp), str(out)], capture_output=True, text=True, check=True
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise SystemExit(f"grm score failed on {inp}: {proc.stderr[-2000:]}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--child", nargs=2, metavar=("INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    cases = [(fmt, "jsonl") for fmt in args.formats.split(",")] + [("jsonl", "parquet")]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'input':>8} {'output':>8} " + " ".join(f"{f'{n:,} rows':>22}" for n in sizes) + "   ratio")
        for fmt, out_fmt in cases:
            results = []
            for n in sizes:
                inp = Path(tmp) / f"in{n}.{fmt}"
                if not inp.exists():
                    write_input(fmt, n, inp)
                out = Path(tmp) / f"out-{fmt}-{n}.{out_fmt}"
                results.append(run(inp, out))
                out.unlink()
            cells = " ".join(f"{r['peak_mib']:8.0f} MiB {r['seconds']:7.1f} s" for r in results)
            print(f"{fmt:>8} {out_fmt:>8} {cells}   {results[-1]['peak_mib'] / results[0]['peak_mib']:.2f}", flush=True)


if __name__ == "__main__":
    main()
