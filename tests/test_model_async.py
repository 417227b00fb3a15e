"""GRM.ascore / ascore_batch run the same plan as score_batch: same results, meta RM, retries, outages."""

import asyncio
import threading
import time

import pytest

from grm import GRM, Completion
from grm.backends import BackendUnavailableError
from helpers import ScriptedBackend, judge_by

ITEMS = [("q1", ["a", "bbb", "cc"]), ("q2", ["dddd", "e"])]


def by_length():
    return ScriptedBackend(judge_by(lambda r: min(10, len(r))))


class ByPosition:
    """A meta RM that rates a judgement by the position of the first shown response (to make k_meta choose)."""

    def score_batch(self, entries):
        return [[float(j.order[0]) for j in judgements] for _, _, judgements in entries]


def test_async_results_equal_sync_results_including_meta_rm():
    sync = GRM(by_length()).score_batch(ITEMS, k=4, seed=2, meta_rm=ByPosition(), k_meta=2)
    asyn = asyncio.run(GRM(by_length()).ascore_batch(ITEMS, k=4, seed=2, meta_rm=ByPosition(), k_meta=2))
    assert [r.to_dict() for r in asyn] == [r.to_dict() for r in sync]
    assert all(len(r.kept) == 2 and r.meta_scores is not None for r in asyn)
    one = asyncio.run(GRM(by_length()).ascore("q1", ["a", "bbb", "cc"], k=4, seed=2, principles="Be brief"))
    assert one.rewards == [4.0, 12.0, 8.0]


def test_native_agenerate_is_used_and_sync_backends_run_one_at_a_time_in_threads():
    class Native(ScriptedBackend):
        async def agenerate(self, requests):
            return self.generate(requests)

        def generate(self, requests):
            self.thread = threading.current_thread()
            return super().generate(requests)

    native = Native(judge_by(len))
    asyncio.run(GRM(native).ascore("q", ["a"]))
    assert native.thread is threading.main_thread()

    class Slow(ScriptedBackend):
        busy = most = 0

        def generate(self, requests):
            Slow.busy += 1
            Slow.most = max(Slow.most, Slow.busy)
            time.sleep(0.05)
            Slow.busy -= 1
            return super().generate(requests)

    rm = GRM(Slow(judge_by(len)))

    async def many():
        return await asyncio.gather(*(rm.ascore(f"q{i}", ["a", "bb"]) for i in range(4)))

    assert [r.rewards for r in asyncio.run(many())] == [[1.0, 2.0]] * 4
    assert Slow.most == 1


@pytest.mark.parametrize("run", ["sync", "async"])
def test_outage_raises_on_the_first_draw_and_keeps_judgements_while_resampling(run):
    class Outage:
        def __init__(self, fail_from):
            self.calls, self.fail_from = 0, fail_from

        def generate(self, requests):
            self.calls += 1
            if self.calls >= self.fail_from:
                raise BackendUnavailableError("server down")
            return [[Completion("Scores: \\boxed{1, 99}", 5, "stop") for _ in range(r.n)] for r in requests]

    def score(rm):
        if run == "sync":
            return rm.score("q", ["a", "b"], k=2)
        return asyncio.run(rm.ascore("q", ["a", "b"], k=2))

    with pytest.raises(BackendUnavailableError, match="server down"):
        score(GRM(Outage(fail_from=1)))
    backend = Outage(fail_from=2)
    r = score(GRM(backend, max_retries=3))
    assert backend.calls == 2 and r.n_valid == 0
    assert [j.error for j in r.judgements] == ["score 99 out of range [1, 10]"] * 2
