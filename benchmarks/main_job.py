"""Where the main job's wall time goes: the README's ``grm score --input examples/items.jsonl --output
out/scores.jsonl -k 8 --seed 0`` (a fresh output each run), on the shipped GRM.

1. End to end, each in a fresh process, alternating in rounds so that load on a shared machine hits all alike:
   the command; the same with ``OMP_NUM_THREADS=1``; and the start-up it contains: ``python -c pass`` (the
   interpreter), ``import grm.cli`` and ``import torch, transformers``. Wall and CPU seconds (the child's rusage).
2. Phases, in one process that runs the command three times through ``grm.cli.main`` (a fresh output each):
   importing grm.cli, then torch, transformers and the backend; loading the model (``GRM.from_pretrained``);
   preparing prompts in the backend (chat template, tokenizing); the first ``model.generate`` batch and the others;
   grm's own work in ``score_batch`` (render, parse, vote: the call minus the backend's); writing rows; the rest.
   Run 1 pays the one-off costs, runs 2 and 3 show what they are. Once with torch's default threads, once with
   ``OMP_NUM_THREADS=1``.
3. The first forward's one-off cost, in a fresh process: a one-token generate, timed first and second.

Usage (from the repository root): ``python benchmarks/main_job.py [--rounds 2] [--k 8]``. The load average is
printed with the numbers: on a shared machine, compare the ratios within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ITEMS = ROOT / "examples" / "items.jsonl"


def job_args(output: Path, k: int) -> list[str]:
    return ["score", "--input", str(ITEMS), "--output", str(output), "-k", str(k), "--seed", "0"]


def command(output: Path, k: int) -> list[str]:
    grm = Path(sys.executable).with_name("grm")
    return [*([str(grm)] if grm.exists() else [sys.executable, "-m", "grm.cli"]), *job_args(output, k)]


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of ``argv`` run to the end in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env={**os.environ, **(env or {})}, cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def end_to_end(rounds: int, k: int, out: Path) -> dict[str, list[tuple[float, float]]]:
    py = sys.executable
    cases = {
        "grm score (the job)": lambda r: timed(command(out / f"e2e-{r}.jsonl", k)),
        "grm score, OMP_NUM_THREADS=1": lambda r: timed(command(out / f"e2e1-{r}.jsonl", k), {"OMP_NUM_THREADS": "1"}),
        "python -c pass": lambda r: timed([py, "-c", "pass"]),
        "python -c 'import grm.cli'": lambda r: timed([py, "-c", "import grm.cli"]),
        "python -c 'import torch, transformers'": lambda r: timed([py, "-c", "import torch, transformers"]),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, run in cases.items():
            results[name].append(run(r))
            print(f"  round {r + 1} {name}: {results[name][-1][0]:.1f} s wall", file=sys.stderr, flush=True)
    return results


def phases(k: int, out: Path) -> list[dict[str, float]]:
    """Run in a child process: the job three times through grm.cli.main, its phases timed (see the docstring)."""
    start = time.perf_counter()
    out = Path(tempfile.mkdtemp(dir=out))  # outputs of its own: a run over finished rows would only skip them
    import grm.cli

    t_grm = time.perf_counter()
    import torch
    import transformers  # noqa: F401

    import grm.backends.transformers as tb
    from grm.jsonl import JsonlWriter
    from grm.model import GRM

    t_torch = time.perf_counter()
    runs: list[dict[str, float]] = []
    spent: dict[str, float] = {}
    batches: list[float] = []

    def wrap(owner, name, key, each=None):
        original = getattr(owner, name)

        def timed_call(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t
                spent[key] = spent.get(key, 0.0) + elapsed
                if each is not None:
                    each.append(elapsed)

        setattr(owner, name, timed_call)

    wrap(GRM, "from_pretrained", "load")
    wrap(GRM, "score_batch", "score_batch")
    wrap(tb.TransformersBackend, "generate", "generate")
    wrap(tb.TransformersBackend, "_generate_chunk", "batches", batches)
    wrap(JsonlWriter, "write", "write")
    for run in range(3):
        spent.clear()
        batches.clear()
        cpu, t = time.process_time(), time.perf_counter()
        code = grm.cli.main(job_args(out / f"phases-{run}.jsonl", k))
        job = time.perf_counter() - t
        assert code == 0, f"grm score exited {code}"
        record = {"job": job, "cpu": time.process_time() - cpu, **spent}
        record["prompts"] = spent["generate"] - spent["batches"]
        record["grm_work"] = spent["score_batch"] - spent["generate"]
        record["rest"] = job - spent["load"] - spent["score_batch"] - spent["write"]
        record["first_batch"], record["other_batches"] = batches[0], sum(batches[1:])
        record["n_batches"] = len(batches)
        if run == 0:
            record |= {"import_grm": t_grm - start, "import_torch": t_torch - t_grm, "threads": torch.get_num_threads()}
        runs.append(record)
    return runs


def first_forward() -> dict[str, float]:
    """Run in a child process: a one-token greedy generate on the shipped GRM, first and second."""
    from grm.backends import GenerationRequest, Sampling
    from grm.model import GRM

    backend = GRM.from_pretrained(progress=False).backend
    request = GenerationRequest([{"role": "user", "content": "What is 17 + 25?"}], 1, Sampling(0.0, 1))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        backend.generate([request])
        times.append(time.perf_counter() - t)
    return {"first": times[0], "second": times[1], "third": times[2]}


def child(flag: str, *args: str, env: dict[str, str] | None = None) -> object:
    argv = [sys.executable, __file__, flag, *args]
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, check=True, capture_output=True, text=True)
    print(f"  {flag} {env or ''}: {done.stdout.strip().splitlines()[-1]}", file=sys.stderr, flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


PHASES = [
    ("job (grm.cli.main), wall", "job"),
    ("  CPU seconds", "cpu"),
    ("  load the model", "load"),
    ("  score_batch", "score_batch"),
    ("    backend: chat template, tokenize", "prompts"),
    ("    backend: first generate batch", "first_batch"),
    ("    backend: other generate batches", "other_batches"),
    ("    grm's work (render, parse, vote)", "grm_work"),
    ("  write rows", "write"),
    ("  rest (read rows, build output rows)", "rest"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="end-to-end rounds (each runs every case once)")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--phases", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--first-forward", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phases:
        print(json.dumps(phases(args.k, Path(args.phases))))
        return
    if args.first_forward:
        print(json.dumps(first_forward()))
        return

    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        e2e = end_to_end(args.rounds, args.k, out)
        by_threads = {
            "as set": child("--phases", str(out), "--k", str(args.k)),
            "1": child("--phases", str(out), "--k", str(args.k), env={"OMP_NUM_THREADS": "1"}),
        }
        first = child("--first-forward")
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")

    print(f"1. end to end, median of {args.rounds} rounds (fresh processes, alternating)")
    job = statistics.median(w for w, _ in e2e["grm score (the job)"])
    for name, values in e2e.items():
        wall, cpu = statistics.median(w for w, _ in values), statistics.median(c for _, c in values)
        print(f"  {name:40s} {wall:7.1f} s wall {cpu:7.1f} s CPU   {wall / job:5.2f} of the job's wall")

    for threads, runs in by_threads.items():
        print(f"\n2. phases in one process, OMP_NUM_THREADS {threads} (torch threads: {runs[0]['threads']}), seconds")
        print(
            f"  import grm.cli {runs[0]['import_grm']:.1f}; import torch, transformers, the backend "
            f"{runs[0]['import_torch']:.1f} (before run 1)"
        )
        print(f"  {'':42s} {'run 1':>8s} {'run 2':>8s} {'run 3':>8s}   run 1 / run 3")
        for label, key in PHASES:
            values = [r[key] for r in runs]
            ratio = values[0] / values[2] if values[2] else float("nan")
            print(f"  {label:42s} " + " ".join(f"{v:8.2f}" for v in values) + f"   {ratio:6.2f}")
        print(f"  ({runs[0]['n_batches']} generate batches per run)")
    print(
        f"\n3. one-token generate in a fresh process: first {first['first']:.3f} s, second {first['second']:.3f} s, "
        f"third {first['third']:.3f} s"
    )


if __name__ == "__main__":
    main()
