"""The reward server under hostile use: each bad request refused alone (400) while a batch scores the rest,
options honoured, NaN and deep nesting refused on a connection that stays open, an engine failure costing only its
request, streamed body limits, stalled bodies, clients that leave, and a cut-off judgement's reward."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from servers import AppServer

from grm import GRM
from grm.server import ServerConfig, create_app
from helpers import CaseScripted, by_length


@pytest.fixture
def server():
    """Start in-process servers; yields ``start(config, backend, meta_rm) -> (base_url, backend, port)``."""
    started = []

    def start(config=None, backend=None, meta_rm=None):
        backend = backend or CaseScripted()
        started.append(AppServer(create_app(GRM(backend), config or ServerConfig(), meta_rm=meta_rm)))
        return started[-1].url, backend, started[-1].port

    yield start
    for s in started:
        s.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def send(sock: socket.socket, path: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    head = {"Host": "test", "Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    sock.sendall(f"POST {path} HTTP/1.1\r\n{lines}\r\n".encode() + body)


def receive(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """One HTTP response read off ``sock``: status, headers (lower-case names), JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    return int(status_line.split()[1]), headers, json.loads(rest)


def post(sock: socket.socket, path: str, body: dict | bytes, **headers: str) -> tuple[int, dict]:
    send(sock, path, body if isinstance(body, bytes) else json.dumps(body).encode(), headers)
    status, _, payload = receive(sock)
    return status, payload


GOOD = {"query": "q", "responses": ["a", "bbb"]}


def test_get_reward_gives_the_failed_reward_for_a_cut_off_judgement(server):
    url, _, _ = server(backend=CaseScripted(cut="Analysis:\nthe response says \\boxed{7}"))
    body = {"query": ["P: case:cut A: 7", "P: hi A: yes"], "prompts": ["P: case:cut A:", "P: hi A:"]}
    r = httpx.post(f"{url}/get_reward", json=body)
    assert r.status_code == 200 and r.json()["rewards"] == pytest.approx([0.0, 4 / 9])


BAD_FIELDS = [
    ({**GOOD, "principles": 5}, "principles must be a string or a list of strings, got int"),
    ({**GOOD, "principles": [1, 2]}, "principle 0 must be a string, got int"),
    ({**GOOD, "principles": {"be": "brief"}}, "principles must be a string or a list of strings, got dict"),
    ({**GOOD, "reference": 42}, "reference must be a string, got int"),
    ({**GOOD, "temperature": -1}, "temperature must be a finite number >= 0"),
    ({**GOOD, "k_meta": 1}, "k_meta"),
    ({**GOOD, "k": 2.5}, "k must be an integer"),
    ({**GOOD, "shuffle": "no"}, "shuffle must be True or False"),
    ({**GOOD, "max_new_tokens": 10**9}, "max_new_tokens must be an integer in 1..8192"),
    ({**GOOD, "k": [[[1]]]}, "k must be a single value"),
    ({**GOOD, "foo": 1}, "unknown field(s) ['foo'] for /score"),
    ({**GOOD, "id": {"a": 1}}, "id must be a string, a number or null"),
    ({"query": [[[["deep"]]]], "responses": ["a"]}, "query message 0 must be a dict"),
]


def test_bad_requests_are_refused_alone_while_a_batch_scores_the_rest(server):
    url, backend, _ = server(ServerConfig(batch_window_s=0.3))

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            good = [client.post("/score", json={"query": f"q{i}", "responses": ["a", "b" * i]}) for i in range(8)]
            bad = [client.post("/score", json=body) for body, _ in BAD_FIELDS]
            return await asyncio.gather(*good), await asyncio.gather(*bad)

    good, bad = asyncio.run(burst())
    for i, r in enumerate(good):
        assert r.status_code == 200 and r.json()["mean"] == [2, by_length("b" * i)]
    for r, (_, message) in zip(bad, BAD_FIELDS):
        assert r.status_code == 400 and message in r.json()["error"], r.text
    assert httpx.get(f"{url}/health").json()["largest_batch"] > 1


def test_nan_and_nesting_are_refused_and_the_connection_stays_open(server):
    url, _, port = server()
    sock = connect(port)
    cases = [
        (b'{"query": "q", "responses": ["a"], "temperature": NaN}', "NaN is not standard JSON"),
        (b'{"query": "q", "responses": ["a"], "id": Infinity}', "Infinity is not standard JSON"),
        (b'{"query": ' + b"[" * 100_000, "nested too deeply"),
        (b'{"query": "q", "responses": ' + b"[" * 500 + b"]" * 500 + b"}", "response 0 must be a string"),
        (b"\xff\xfe{}", "not valid JSON"),
    ]
    for body, message in cases:
        status, payload = post(sock, "/score", body)
        assert status == 400 and message in payload["error"]
    status, payload = post(sock, "/score", {**GOOD, "id": 7})
    assert status == 200 and payload["id"] == 7 and payload["mean"] == [2, 4]
    sock.close()


def test_an_engine_failure_costs_only_its_own_request_and_keeps_the_connection(server):
    url, _, port = server(ServerConfig(batch_window_s=0.3))

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            boom = client.post("/score", json={"query": "case:boom", "responses": ["a"]})
            good = [client.post("/score", json={"query": f"q{i}", "responses": ["a"]}) for i in range(4)]
            return await asyncio.gather(boom, *good)

    boom, *good = asyncio.run(burst())
    assert boom.status_code == 500 and "engine failure on case:boom" in boom.json()["error"]
    assert all(r.status_code == 200 and r.json()["rewards"] == [2.0] for r in good)
    sock = connect(port)
    status, payload = post(sock, "/score", {"query": "case:boom", "responses": ["a"]})
    assert status == 500 and "RuntimeError" in payload["error"]
    assert post(sock, "/score", GOOD)[0] == 200  # the same connection serves on
    sock.close()


class Encoding(CaseScripted):
    """Fails a whole batch that holds text it cannot encode, as a tokenizer does (a lone surrogate: TypeError)."""

    def generate(self, requests):
        for r in requests:
            for m in r.messages:
                m["content"].encode("utf-8")  # UnicodeEncodeError, a ValueError, for a lone surrogate
        return super().generate(requests)


def test_a_lone_surrogate_is_refused_before_it_can_fail_a_batch(server):
    url, backend, _ = server(ServerConfig(batch_window_s=0.3), backend=Encoding())

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            bad = client.post("/score", content=b'{"query": "q", "responses": ["a\\ud800"]}')
            good = [client.post("/score", json={"query": f"q{i}", "responses": ["a"]}) for i in range(4)]
            return await asyncio.gather(bad, *good)

    bad, *good = asyncio.run(burst())
    assert bad.status_code == 400 and "responses[0] holds a lone surrogate" in bad.json()["error"], bad.text
    assert all(r.status_code == 200 and r.json()["rewards"] == [2.0] for r in good)
    assert sum(len(call) for call in backend.calls) == 4, "no item was scored twice (no rescoring one by one)"


def test_scoring_options_in_a_request_are_honoured(server):
    url, backend, _ = server()
    r = httpx.post(f"{url}/score", json={**GOOD, "k": 16, "shuffle": False, "seed": 1}).json()
    assert all(j["order"] == [0, 1] for j in r["judgements"]) and len(r["judgements"]) == 16
    r = httpx.post(f"{url}/score", json={**GOOD, "k": 16, "seed": 1}).json()
    assert any(j["order"] == [1, 0] for j in r["judgements"])  # shuffled by default
    httpx.post(f"{url}/score", json={**GOOD, "max_new_tokens": 77})
    assert backend.calls[-1][0].sampling.max_new_tokens == 77
    wide = {"query": "q", "responses": ["", "x" * 20], "k": 12, "adaptive": True, "adaptive_round": 4, "seed": 0}
    r = httpx.post(f"{url}/score", json=wide).json()
    assert r["best"] == 1 and len(r["judgements"]) == 8  # the leader is safe after two rounds of 4
    r = httpx.post(f"{url}/score", json={**GOOD, "temperature": 0.7, "k": 2, "seed": 3}).json()
    assert backend.calls[-1][0].sampling.temperature == 0.7 and r["n_valid"] == 2


def test_get_reward_refuses_bad_labels_too_many_items_and_unknown_fields(server):
    url, _, _ = server(ServerConfig(max_reward_items=3))
    ok = {"query": ["P: A: x"], "prompts": ["P: A:"]}
    cases = [
        ({**ok, "labels": [5]}, "labels[0] must be a string or null, got int"),
        ({**ok, "labels": [["x"]]}, "labels[0] must be a string or null, got list"),
        ({"query": ["P: A: x"] * 4, "prompts": ["P: A:"] * 4}, "at most 3 items per /get_reward request, got 4"),
        ({**ok, "metadata": {}}, "unknown field(s) ['metadata'] for /get_reward"),
        ({**ok, "k_meta": 1}, "k_meta"),
    ]
    for body, message in cases:
        r = httpx.post(f"{url}/get_reward", json=body)
        assert r.status_code == 400 and message in r.json()["error"], r.text
    r = httpx.post(f"{url}/get_reward", json={**ok, "labels": [None], "k": 2, "seed": 0})
    assert r.status_code == 200 and r.json()["rewards"] == pytest.approx([2 / 9])


def test_bearer_scheme_is_case_insensitive(server):
    url, _, _ = server(ServerConfig(api_key="sekret"))
    for header in ("Bearer sekret", "bearer sekret", "BEARER  sekret"):
        assert httpx.post(f"{url}/score", json=GOOD, headers={"Authorization": header}).status_code == 200
    for header in ("Bearer nope", "Basic sekret", "bearer"):
        assert httpx.post(f"{url}/score", json=GOOD, headers={"Authorization": header}).status_code == 401


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(server):
    _, _, port = server(ServerConfig(max_body_bytes=10_000))
    sock = connect(port)
    sock.sendall(
        b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    for _ in range(4):  # 16 KB of an endless body, then nothing more
        sock.sendall(b"1000\r\n" + b" " * 4096 + b"\r\n")
    status, _, payload = receive(sock)
    assert status == 413 and "over the limit of 10000" in payload["error"]
    sock.close()


def test_a_stalled_body_times_out_and_holds_no_place(server):
    url, _, port = server(ServerConfig(body_timeout_s=0.5, max_in_flight=2))
    sock = connect(port)
    send(sock, "/score", b'{"query": "q"', {"Content-Length": "100"})
    start = time.monotonic()
    status, _, payload = receive(sock)
    assert status == 408 and "not received within 0.5 s" in payload["error"] and time.monotonic() - start < 5
    sock.close()

    url, _, port = server(ServerConfig(body_timeout_s=60, max_in_flight=2))
    stalled = [connect(port) for _ in range(6)]
    for s in stalled:
        send(s, "/score", b'{"query": "q"', {"Content-Length": "1000"})
    time.sleep(0.3)
    for _ in range(3):
        assert httpx.post(f"{url}/score", json=GOOD, timeout=10).status_code == 200
    assert httpx.get(f"{url}/health").json()["in_flight"] == 0
    for s in stalled:
        s.close()


def test_a_client_that_leaves_takes_its_queued_items_with_it(server):
    url, backend, port = server(ServerConfig(max_batch_items=1, batch_window_s=0), backend=CaseScripted(delay=0.3))
    sock = connect(port)
    body = {"query": [f"P: A: {i}" for i in range(20)], "prompts": ["P: A:"] * 20}
    send(sock, "/get_reward", json.dumps(body).encode())
    time.sleep(0.5)
    sock.close()  # 20 items of 0.3 s each queued; the client leaves after 0.5 s
    time.sleep(1.0)
    scored = httpx.get(f"{url}/health").json()["items"]
    time.sleep(1.0)
    assert httpx.get(f"{url}/health").json()["items"] == scored < 5, "items were scored for a client that left"
