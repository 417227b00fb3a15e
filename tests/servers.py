"""Local servers for the HTTP tests, all on 127.0.0.1: a real vLLM OpenAI server, a fault server that answers chat
completions badly on purpose, as a script says, and the reward server app in a thread."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}
ENGINE_ARGS = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """A vLLM OpenAI server process on 127.0.0.1; :meth:`wait` blocks until ``/health`` answers."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}/v1"

    def wait(self, timeout: float = 300) -> str:
        """The base URL, once the server is healthy; raises with the server's log if it dies or times out."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM server not healthy after {timeout} s:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            time.sleep(1)


@contextlib.contextmanager
def vllm_server(model: str, log: Path) -> Iterator[VLLMServer]:
    """Start ``vllm.entrypoints.openai.api_server`` for ``model`` on a free port (without waiting for it) and
    always stop it, with its engine processes: it runs in a process group of its own."""
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "1024"]
    cmd += ["--generation-config", "vllm"]  # neutral defaults: a request's own sampling settings are all there is
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **VLLM_ENV}, start_new_session=True
        )
    try:
        yield VLLMServer(proc, port, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


CASE = re.compile(r"case:(\w+)")


class AppServer:
    """An ASGI app (the reward server) served by uvicorn on a free port of 127.0.0.1, in a thread of its own."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(250):
            if self.server.started:
                break
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class FaultServer:
    """A chat completions endpoint that misbehaves per request as ``script`` says.

    A request's case is the ``case:NAME`` word in its messages; ``script[NAME]`` lists the actions for its
    successive requests (the last one repeats). Actions: ``ok`` (judge with ``answer``), ``429``/``500``/``503``/
    ``400``/``401`` (that status with a JSON error naming the case), ``hang`` (no answer until stopped), ``garbage``
    (HTTP 200 with HTML), ``drop`` (close the connection unanswered), ``one_choice`` (ignore ``n``), ``reject_n``
    (400 when ``n > 1``), ``text:...`` (answer that text), ``raw:...`` (HTTP 200 with that body, as it is),
    ``retry_after:S`` (429 with ``Retry-After: S``), ``slow`` (answer after 0.2 s), ``seeded`` (choice ``i`` is
    ``answer(messages, seed + i)``: each sample's own seed, as vLLM seeds the samples of ``n``; no seed counts as
    0), which makes a seeded engine whose samples depend on nothing else. ``hits``, ``times``,
    ``payloads`` and ``max_in_flight`` record what came in.
    """

    def __init__(self, script: dict[str, list[str]], answer: Callable[[list[dict[str, str]], int], str]) -> None:
        self.script, self.answer = script, answer
        self.hits: Counter[str] = Counter()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.payloads: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = self.max_in_flight = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def __enter__(self) -> FaultServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _action(self, payload: dict) -> tuple[str, str]:
        text = " ".join(m["content"] for m in payload["messages"])
        case = m.group(1) if (m := CASE.search(text)) else "default"
        with self.lock:
            actions = self.script.get(case, ["ok"])
            action = actions[min(self.hits[case], len(actions) - 1)]
            self.hits[case] += 1
            self.times[case].append(time.monotonic())
        return case, action

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.payloads.append(payload)
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self.act(payload)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def act(self, payload: dict) -> None:
                case, action = server._action(payload)
                n = payload.get("n", 1)
                error = json.dumps({"error": {"message": f"{case} says {action}", "type": "test"}}).encode()
                if action == "hang":
                    server.stopping.wait(20)
                elif action == "drop":
                    self.close_connection = True
                elif action == "garbage":
                    self.send(
                        200, b"<html><body>502 Bad Gateway (not JSON)</body></html>", {"Content-Type": "text/html"}
                    )
                elif action.startswith("raw:"):
                    self.send(200, action[4:].encode())
                elif action.startswith("retry_after:"):
                    self.send(429, error, {"Retry-After": action.split(":", 1)[1]})
                elif action.isdigit():
                    self.send(int(action), error)
                elif action == "reject_n" and n > 1:
                    self.send(400, json.dumps({"error": {"message": "n must be 1"}}).encode())
                else:
                    if action == "slow":
                        time.sleep(0.2)
                    count = 1 if action == "one_choice" else n
                    first = payload.get("seed", 0) if action == "seeded" else 0
                    texts = [
                        action[5:] if action.startswith("text:") else server.answer(payload["messages"], first + i)
                        for i in range(count)
                    ]
                    body = {
                        "object": "chat.completion",
                        "model": payload["model"],
                        "choices": [
                            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                            for i, t in enumerate(texts)
                        ],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7 * count},
                    }
                    self.send(200, json.dumps(body).encode())

        return Handler
