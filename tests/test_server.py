"""The reward server: load with dynamic batching, bad requests, OpenRLHF protocol, graceful shutdown."""

import asyncio
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from servers import AppServer, free_port

from grm import GRM
from grm.server import ServerConfig, create_app
from helpers import MEMORIZED, ScriptedBackend, judge_by, shown_responses


class SlowScripted(ScriptedBackend):
    """Scores by length; each generate call takes a little while, as an engine would."""

    def __init__(self, delay=0.05):
        super().__init__(judge_by(lambda r: min(10, 1 + len(r))))
        self.delay = delay

    def generate(self, requests):
        time.sleep(self.delay)
        return super().generate(requests)


@pytest.fixture
def server():
    """Start in-process servers; yields ``start(config, delay) -> (base_url, backend, app)``."""
    started = []

    def start(config=None, delay=0.05):
        backend = SlowScripted(delay)
        app = create_app(GRM(backend), config or ServerConfig())
        started.append(AppServer(app))
        return started[-1].url, backend, app

    yield start
    for s in started:
        s.stop()


def test_concurrent_load_is_batched_and_every_request_answered(server):
    url, backend, app = server()
    n = 60

    async def load():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def one(i):
                responses = ["x" * (i % 7), "y" * (i % 5 + 1)]
                r = await client.post("/score", json={"query": f"q{i}", "responses": responses, "k": 2})
                return i, responses, r

            return await asyncio.gather(*(one(i) for i in range(n)))

    results = asyncio.run(load())
    for _, responses, r in results:
        assert r.status_code == 200, r.text
        body = r.json()
        expected = [min(10, 1 + len(x)) for x in responses]
        assert body["mean"] == expected and body["n_valid"] == 2
        assert body["normalized"] == pytest.approx([(e - 1) / 9 for e in expected])
    health = httpx.get(f"{url}/health").json()
    assert health["items"] == n and health["served"] == n and health["in_flight"] == 0
    assert health["batches"] < n / 3 and health["largest_batch"] > 3  # batching happened
    assert len(backend.calls) == health["batches"]


def test_bad_requests_get_4xx_with_a_message(server):
    url, _, _ = server(ServerConfig(max_responses=3, max_body_bytes=2000, api_key="sekret", max_k=4))
    auth = {"Authorization": "Bearer sekret"}
    ok = {"query": "q", "responses": ["a"]}
    cases = [
        (httpx.post(f"{url}/score", json=ok), 401, "API key"),
        (httpx.post(f"{url}/score", json=ok, headers={"Authorization": "Bearer nope"}), 401, "API key"),
        (httpx.post(f"{url}/score", content=b"{not json", headers=auth), 400, "not valid JSON"),
        (httpx.post(f"{url}/score", json=[1, 2], headers=auth), 400, "JSON object"),
        (httpx.post(f"{url}/score", json={"query": "q", "responses": ["a"] * 4}, headers=auth), 400, "at most 3"),
        (httpx.post(f"{url}/score", json={"query": "q", "responses": ["x" * 3000]}, headers=auth), 413, "limit"),
        (httpx.post(f"{url}/score", json={"query": "q"}, headers=auth), 400, "'query' and 'responses'"),
        (httpx.post(f"{url}/score", json={**ok, "k": 9}, headers=auth), 400, "k must be an integer in 1..4"),
        (httpx.post(f"{url}/score", json={**ok, "responses": []}, headers=auth), 400, "empty"),
        (httpx.post(f"{url}/get_reward", json={"query": ["ab"]}, headers=auth), 400, "'prompts'"),
        (httpx.post(f"{url}/get_reward", json={"query": ["ab"], "prompts": ["x"]}, headers=auth), 400, "start with"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, (response.status_code, response.text)
        assert message in response.json()["error"]
    good = httpx.post(f"{url}/score", json=ok, headers={"X-API-Key": "sekret"})
    assert good.status_code == 200 and good.json()["rewards"] == [2.0]
    assert httpx.get(f"{url}/health").status_code == 200  # health needs no key


def test_openrlhf_get_reward(server):
    url, backend, _ = server()
    body = {"query": ["Q: hi A: hello", "Q: hi A: yo"], "prompts": ["Q: hi A:", "Q: hi A:"], "labels": ["hey", ""]}
    r = httpx.post(f"{url}/get_reward", json=body)
    assert r.status_code == 200
    # responses " hello" (6 chars -> 7) and " yo" (3 chars -> 4), normalised from 1..10
    assert r.json()["rewards"] == pytest.approx([6 / 9, 3 / 9]) and r.json()["scores"] == r.json()["rewards"]
    sent = [req.messages[-1]["content"] for call in backend.calls for req in call]
    assert any("[The Start of Reference Answer]\nhey" in s for s in sent)
    assert sum("Reference Answer" in s for s in sent) == 1


def test_too_many_in_flight_gets_503(server):
    url, _, _ = server(ServerConfig(max_in_flight=2, batch_window_s=0.0), delay=0.5)

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/score", json={"query": "q", "responses": ["a"]}) for _ in range(6))
            )

    codes = sorted(r.status_code for r in asyncio.run(burst()))
    assert codes.count(200) >= 2 and 503 in codes and set(codes) <= {200, 503}


@pytest.mark.slow
def test_sigterm_answers_every_accepted_request(memorized_grm_path, tmp_path):
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "grm.cli",
        "serve",
        "--model",
        memorized_grm_path,
        "--port",
        str(port),
        "--max-new-tokens",
        "80",
        "--batch-window-ms",
        "200",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        q, responses, truth = MEMORIZED[1]
        results = []

        def client():
            r = httpx.post(f"{url}/score", json={"query": q, "responses": responses, "k": 4, "seed": 0}, timeout=120)
            results.append(r)

        threads = [threading.Thread(target=client) for _ in range(5)]
        for t in threads:
            t.start()
        for _ in range(200):
            if httpx.get(f"{url}/health", timeout=5).json()["in_flight"] == 5:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=120)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
        assert len(results) == 5 and all(r.status_code == 200 for r in results)
        assert all(r.json()["best"] == 1 for r in results)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read() if proc.stdout else ""
        print(out[-3000:], file=sys.stderr)


def test_verl_reward_file_calls_the_server(server, monkeypatch):
    import importlib.util
    from pathlib import Path

    url, backend, _ = server()
    path = Path(__file__).resolve().parents[1] / "examples" / "verl_grm_reward.py"
    spec = importlib.util.spec_from_file_location("verl_grm_reward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("GRM_URL", url)
    monkeypatch.setenv("GRM_N_MAX", "2")
    assert module.compute_score("gsm8k", "abc", "3", {"question": "q"}) == pytest.approx(3 / 9)
    infos = [{"question": "q1"}, {"question": "q2"}, {"question": "q1"}, {"question": "q1"}]
    out = module.compute_score_batch(["d"] * 4, ["a", "bb", "cccc", ""], [None] * 4, infos)
    assert out == pytest.approx([1 / 9, 2 / 9, 4 / 9, 0.0])
    sizes = sorted(len(shown_responses(req.messages)) for call in backend.calls for req in call)
    assert sizes == [1, 1, 1, 2]  # compute_score's one; then q1 in chunks of 2 and 1, and q2
    with pytest.raises(KeyError, match="extra_info"):
        module.compute_score("d", "x", None, {})
