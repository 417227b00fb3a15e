"""Scaling ``grm score`` out on Ray: the same rows scored by 1 and by 2 replicas of the shipped GRM, side by side in
one run on one local Ray cluster, each run into its own output.

Reports, per replica count, the seconds until the first row was written (the replicas start and load the model),
the whole run's seconds, rows/s over the whole run and rows/s after the first row (the scoring itself), and the
2-replica / 1-replica ratios; it also checks that both runs wrote the same rows. On a machine with fewer free cores
than replicas the ratio stays near 1 (the replicas share the cores); on a cluster, each replica holds its own GPU or
cores and the scoring rate grows with the replicas until the input or the writer is the bottleneck. Usage:

    python benchmarks/ray_scale.py [--rows 600] [--batch-size 16] [--k 1] [--cpus 2] [--max-new-tokens N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import ray

from grm.distributed import Replica, score_on_ray
from grm.synthetic import make_examples


def timed_run(data: Path, out: Path, replicas: int, args: argparse.Namespace) -> dict[str, float]:
    first: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and not first:
            if out.exists() and out.stat().st_size > 0:
                first.append(time.perf_counter())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    start = time.perf_counter()
    watcher.start()
    model_kwargs = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    stats = score_on_ray(
        data,
        out,
        Replica(model_kwargs=model_kwargs),
        replicas=replicas,
        batch_size=args.batch_size,
        progress=False,
        seed=0,
        k=args.k,
    )
    end = time.perf_counter()
    stop.set()
    watcher.join()
    assert stats.scored + stats.failed == args.rows, stats
    first_s = (first[0] if first else end) - start
    return {
        "first_row_s": first_s,
        "total_s": end - start,
        "rows_per_s": args.rows / (end - start),
        "scoring_rows_per_s": (args.rows - 1) / max(end - start - first_s, 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16, help="rows per replica call")
    parser.add_argument("--k", type=int, default=1, help="judgements per row")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the shipped GRM's")
    args = parser.parse_args()

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "rows.jsonl"
            data.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in make_examples(args.rows, 11)))
            results = {n: timed_run(data, Path(tmp) / f"out-{n}.jsonl", n, args) for n in (1, 2)}
            outputs = [
                sorted(Path(tmp, f"out-{n}.jsonl").read_text().splitlines(), key=lambda x: json.loads(x)["index"])
                for n in (1, 2)
            ]
    finally:
        ray.shutdown()
    print(f"{args.rows} rows, batch {args.batch_size}, k={args.k}, Ray cluster of {args.cpus} CPUs")
    print("| replicas | first row s | total s | rows/s | rows/s after the first row |")
    print("|---|---|---|---|---|")
    for n, r in results.items():
        cells = f"{r['first_row_s']:.1f} | {r['total_s']:.1f} | {r['rows_per_s']:.3f} | {r['scoring_rows_per_s']:.3f}"
        print(f"| {n} | {cells} |")
    print(
        f"2 / 1 replicas: rows/s x{results[2]['rows_per_s'] / results[1]['rows_per_s']:.2f}, after the first row "
        f"x{results[2]['scoring_rows_per_s'] / results[1]['scoring_rows_per_s']:.2f}; "
        f"same rows written: {outputs[0] == outputs[1]}"
    )


if __name__ == "__main__":
    main()
