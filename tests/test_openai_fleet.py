"""The HTTP backend over a fleet of servers: least-outstanding spreading, failover, recovery, nothing lost."""

import threading
import time

from servers import FaultServer

from grm import GRM
from grm.backends.openai import OpenAIBackend
from helpers import judge_by

FAST = dict(retries=4, backoff=0.01, max_backoff=0.5, timeout=2, progress=False)


def fleet(*servers, **kw):
    return GRM(OpenAIBackend("judge", [s.url for s in servers], **{**FAST, **kw}))


def items(n):
    return [(f"question {i}", ["a" * (i % 5 + 1), "b"]) for i in range(n)]


def test_requests_spread_over_healthy_servers():
    with FaultServer({"default": ["slow"]}, judge_by(len)) as a, FaultServer({"default": ["slow"]}, judge_by(len)) as b:
        rewards = fleet(a, b, max_concurrency=8).score_batch(items(24), shuffle=False)
    assert all(r.n_valid == 1 for r in rewards)
    assert a.hits["default"] + b.hits["default"] == 24
    assert min(a.hits["default"], b.hits["default"]) >= 8  # least outstanding keeps them close
    assert a.max_in_flight <= 8 and b.max_in_flight <= 8


def test_a_server_killed_mid_run_fails_over_with_nothing_lost():
    with FaultServer({"default": ["slow"]}, judge_by(len)) as b:
        a = FaultServer({"default": ["slow"]}, judge_by(len)).__enter__()
        threading.Timer(0.3, a.__exit__, args=(None, None, None)).start()
        t = time.monotonic()
        rewards = fleet(a, b, max_concurrency=4).score_batch(items(40), shuffle=False)
        elapsed = time.monotonic() - t
    assert [r.n_valid for r in rewards] == [1] * 40
    assert [r.rewards for r in rewards] == [[float(i % 5 + 1), 1.0] for i in range(40)]
    assert a.hits["default"] >= 1 and b.hits["default"] >= 20
    assert elapsed < 20


def test_a_failing_server_is_paused_then_used_again():
    with (
        FaultServer({"default": ["500", "ok"]}, judge_by(len)) as a,
        FaultServer({"default": ["ok"]}, judge_by(len)) as b,
    ):
        rm = fleet(a, b, max_concurrency=1, cooldown=0.2)
        first = rm.score_batch(items(20), shuffle=False)
        assert all(r.n_valid == 1 for r in first) and a.hits["default"] >= 1
        failed_at = a.times["default"][-1]
        time.sleep(0.5)  # past the pause
        second = rm.score_batch(items(20), shuffle=False)
    assert all(r.n_valid == 1 for r in second)
    assert any(t > failed_at + 0.2 for t in a.times["default"]), "the server got traffic again after its pause"
    assert a.hits["default"] >= 2  # it failed once, then was used again (and answered: every judgement is valid)


def test_every_server_down_raises_after_retries():
    from grm.backends import BackendUnavailableError

    with FaultServer({"default": ["500"]}, judge_by(len)) as a, FaultServer({"default": ["500"]}, judge_by(len)) as b:
        rm = fleet(a, b, retries=3)
        try:
            rm.score_batch(items(2), shuffle=False)
            raised = None
        except BackendUnavailableError as e:
            raised = str(e)
    assert raised and "HTTP 500" in raised and a.url in raised and b.url in raised
    assert a.hits["default"] + b.hits["default"] == 8  # 2 requests x 4 attempts, spread over both
