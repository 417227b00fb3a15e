"""Reward-server benchmarks, each measured side by side in one run.

``batching``: dynamic batching against one-request-at-a-time handling. Serves a tiny local model through the
transformers backend twice (same model, same requests): once with dynamic batching (``max_batch_items=64``, 20 ms
window), once with ``max_batch_items=1`` (each request scored alone, as a naive server would). ``--clients``
concurrent clients each send ``--requests`` /score requests.

``head-of-line``: how long an innocent small request waits behind a big one. The server runs a paced engine (a
script that sleeps as a batched engine computes: ``--call-ms`` per engine call plus ``--sample-ms`` per judgement,
and answers a valid judgement), so the numbers measure the server's scheduling, not the machine's load. It times a
small ``/score`` alone, then the same small ``/score`` sent 1 s after a ``--items``-item OpenRLHF ``/get_reward``,
then sent 0.2 s after a ``/score`` whose response is ``--big-mb`` MB of text (JSON parsing, checks and rendering),
and the longest of ``GET /health`` requests sent one after another during the big ``/score`` (how long the event loop
is held).
With ``--baseline REV`` the same measurements run, alternating, with the server code of git revision REV (on a copy
of the working tree's scoring core, so that only the server differs) and with the working tree's, each in a fresh
process.

    python benchmarks/server.py batching [--clients 16] [--requests 4] [--max-new-tokens 32] [--rounds 2]
    python benchmarks/server.py head-of-line [--items 1024] [--baseline 842df15] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]


def run_server(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------------------------------------- batching


async def load(url: str, clients: int, requests: int) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def one_client(c: int) -> None:
            for r in range(requests):
                body = {"query": f"Question {c}-{r}: is the sky blue?", "responses": ["yes it is", "no"]}
                response = await client.post("/score", json=body)
                response.raise_for_status()

        t = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
        return time.perf_counter() - t


def batching(args: argparse.Namespace) -> None:
    from grm import GRM
    from grm.server import ServerConfig, create_app
    from grm.tiny import build_causal_lm

    path = tempfile.mkdtemp()
    build_causal_lm(path, ["Question: is the sky blue? yes it is no", "Scores: \\boxed{1, 2}"])
    rm = GRM.from_pretrained(path, max_new_tokens=args.max_new_tokens, progress=False, batch_size=64)
    total = args.clients * args.requests
    configs = {
        "dynamic batching": ServerConfig(max_batch_items=64, batch_window_s=0.02),
        "one at a time": ServerConfig(max_batch_items=1, batch_window_s=0.0),
    }
    seconds = dict.fromkeys(configs, 0.0)
    for _ in range(args.rounds):  # alternate the two so that drifting machine load hits both alike
        for name, config in configs.items():
            server, thread, url = run_server(create_app(rm, config))
            asyncio.run(load(url, 2, 1))  # warm-up
            seconds[name] += asyncio.run(load(url, args.clients, args.requests))
            server.should_exit = True
            thread.join()
    rate = {name: args.rounds * total / s for name, s in seconds.items()}
    for name in configs:
        print(f"{name}: {args.rounds * total} requests in {seconds[name]:.2f} s = {rate[name]:.2f} judgements/s")
    print(f"dynamic / one-at-a-time = {rate['dynamic batching'] / rate['one at a time']:.2f}x")


# ---------------------------------------------------------------------------------------------------- head of line

SHOWN = re.compile(r"\[The Start of Response \d+\]")


class PacedEngine:
    """A backend that takes as long as a batched engine would (``call_s`` per call, ``sample_s`` per judgement,
    sleeping, so it holds no CPU) and answers each request with a valid judgement of its shown responses."""

    def __init__(self, call_s: float, sample_s: float) -> None:
        self.call_s, self.sample_s = call_s, sample_s

    def generate(self, requests):
        from grm.backends import Completion

        time.sleep(self.call_s + self.sample_s * sum(r.n for r in requests))
        out = []
        for r in requests:
            n = max(1, len(SHOWN.findall(r.messages[-1]["content"])))
            text = "Analysis:\nfine.\n\nScores: \\boxed{" + ", ".join(["5"] * n) + "}"
            out.append([Completion(text, 8, "stop") for _ in range(r.n)])
        return out


SMALL = {"query": "Is the sky blue?", "responses": ["yes", "no"]}


async def timed_post(client: httpx.AsyncClient, path: str, body: dict | bytes) -> float:
    t = time.perf_counter()
    r = await (client.post(path, content=body) if isinstance(body, bytes) else client.post(path, json=body))
    if r.status_code != 200:
        raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:300]}")
    return time.perf_counter() - t


async def timed_health(client: httpx.AsyncClient) -> float:
    t = time.perf_counter()
    (await client.get("/health")).raise_for_status()
    return time.perf_counter() - t


async def behind(url: str, first: dict | bytes, path: str, delay: float) -> tuple[float, float]:
    """(latency of SMALL sent ``delay`` s after ``first`` was posted to ``path``, latency of ``first``)."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        big = asyncio.ensure_future(timed_post(client, path, first))
        await asyncio.sleep(delay)
        small = await timed_post(client, "/score", SMALL)
        return small, await big


async def longest_health(url: str, first: bytes) -> float:
    """The longest of the GET /health requests sent one after another while ``first`` is posted to /score and
    scored: how long the event loop was held at most."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        big = asyncio.ensure_future(timed_post(client, "/score", first))
        longest = 0.0
        while not big.done():
            longest = max(longest, await timed_health(client))
        await big
        return longest


def measure(args: argparse.Namespace) -> dict[str, float]:
    """One round of the head-of-line measurements on the ``grm`` importable here."""
    from grm import GRM
    from grm.server import ServerConfig, create_app

    rm = GRM(PacedEngine(args.call_ms / 1000, args.sample_ms / 1000))
    server, thread, url = run_server(create_app(rm, ServerConfig()))
    try:

        async def alone() -> float:
            async with httpx.AsyncClient(base_url=url, timeout=600) as client:
                return statistics.median([await timed_post(client, "/score", SMALL) for _ in range(5)])

        prompts = [f"Question {i}: say something.<|im_end|>\n<|im_start|>assistant\n" for i in range(args.items)]
        reward = {"query": [p + f"Answer {i}." for i, p in enumerate(prompts)], "prompts": prompts}
        big_text = "word " * int(args.big_mb * 1e6 / 5)
        big_body = json.dumps({"query": "Summarise.", "responses": [big_text]}).encode()
        out = {"alone_s": asyncio.run(alone())}
        out["behind_reward_s"], out["reward_s"] = asyncio.run(behind(url, reward, "/get_reward", 1.0))
        out["behind_big_body_s"], out["big_body_s"] = asyncio.run(behind(url, big_body, "/score", 0.2))
        out["health_during_big_body_s"] = asyncio.run(longest_health(url, big_body))
        return out
    finally:
        server.should_exit = True
        thread.join()


def extract(revision: str) -> Path:
    """A copy of the working tree's ``grm`` package (its templates included) whose server is the one of git revision
    ``revision``, in a temporary folder to import from: the old server on today's scoring core, so that the
    comparison measures the server alone."""
    folder = Path(tempfile.mkdtemp(prefix=f"grm-server-{revision}-"))
    shutil.copytree(ROOT / "grm", folder / "grm", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "prompts", folder / "grm" / "templates", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(folder / "grm" / "server")
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", revision, "grm/server", "grm/server.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, *listed], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def in_fresh_process(args: argparse.Namespace, code: Path | None) -> dict[str, float]:
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "head-of-line", "--one-round", "--items", str(args.items)]
    cmd += ["--call-ms", str(args.call_ms), "--sample-ms", str(args.sample_ms), "--big-mb", str(args.big_mb)]
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
    return json.loads(done.stdout.strip().splitlines()[-1])


def head_of_line(args: argparse.Namespace) -> None:
    if args.one_round:
        import grm

        print(json.dumps({**measure(args), "grm": grm.__file__}))
        return
    runs: dict[str, list[dict[str, float]]] = {}
    codes = {"working tree": None}
    if args.baseline:
        codes = {f"baseline {args.baseline}": extract(args.baseline), **codes}
    for _ in range(args.rounds):  # alternate, so that drifting machine load hits both alike
        for name, code in codes.items():
            runs.setdefault(name, []).append(in_fresh_process(args, code))
    rows = [
        ("small /score alone", "alone_s"),
        (f"small /score 1 s after a {args.items}-item /get_reward", "behind_reward_s"),
        (f"  (the {args.items}-item /get_reward itself)", "reward_s"),
        (f"small /score 0.2 s after a {args.big_mb:g} MB /score", "behind_big_body_s"),
        (f"  (the {args.big_mb:g} MB /score itself)", "big_body_s"),
        (f"longest GET /health during a {args.big_mb:g} MB /score", "health_during_big_body_s"),
    ]
    names = list(codes)
    engine = f"{args.call_ms:g} ms/call + {args.sample_ms:g} ms/judgement"
    print(f"median of {args.rounds} round(s), seconds; engine: {engine}")
    print("| measurement | " + " | ".join(names) + (" | ratio |" if len(names) == 2 else " |"))
    print("| --- " * (len(names) + 1 + (len(names) == 2)) + "|")
    for label, key in rows:
        values = [statistics.median(r[key] for r in runs[name]) for name in names]
        ratio = f" | {values[0] / values[1]:.1f}x" if len(values) == 2 and values[1] > 0 else ""
        print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + ratio + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="scenario", required=True)
    b = sub.add_parser("batching", help="dynamic batching against one request at a time (tiny model)")
    b.add_argument("--clients", type=int, default=16)
    b.add_argument("--requests", type=int, default=4)
    b.add_argument("--max-new-tokens", type=int, default=32)
    b.add_argument("--rounds", type=int, default=2, help="alternating rounds of each configuration")
    b.set_defaults(func=batching)
    h = sub.add_parser("head-of-line", help="a small request's latency behind a big one (paced engine)")
    h.add_argument("--items", type=int, default=1024, help="items of the big /get_reward")
    h.add_argument("--big-mb", type=float, default=3.9, help="size of the big /score body's response")
    h.add_argument("--call-ms", type=float, default=50.0, help="engine time per call")
    h.add_argument("--sample-ms", type=float, default=5.0, help="engine time per judgement")
    h.add_argument("--baseline", default=None, metavar="REV", help="also measure the server of this git revision")
    h.add_argument("--rounds", type=int, default=1)
    h.add_argument("--one-round", action="store_true", help=argparse.SUPPRESS)
    h.set_defaults(func=head_of_line)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
