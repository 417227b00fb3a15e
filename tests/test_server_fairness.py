"""Fair batching in the reward server: a small request is served within a bounded number of engine calls behind a
big one, admission counts work (items x k x max_new_tokens), and requests are read off the event loop."""

import asyncio
import threading
import time

import httpx
from servers import AppServer

from grm import GRM, Item, ScoringOptions
from grm.server import RewardService, ServerConfig, create_app
from helpers import ScriptedBackend, by_length, judge_by, shown_responses


class Recording(ScriptedBackend):
    """Scores by length, sleeping ``delay`` per call, as an engine takes time; ``started`` counts calls begun."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(judge_by(by_length))
        self.delay, self.started = delay, 0

    def generate(self, requests):
        self.started += 1
        time.sleep(self.delay)
        return super().generate(requests)


def queries(call):
    """The query text of each request of an engine call."""
    return [r.messages[-1]["content"].split("[The Start of Query]\n", 1)[1].split("\n", 1)[0] for r in call]


def test_a_small_request_is_served_by_the_next_engine_call_behind_a_big_one():
    backend = Recording(delay=0.05)
    svc = RewardService(GRM(backend), ServerConfig(max_batch_items=8, batch_window_s=0.0))

    async def main():
        svc.batcher.start()
        prompts = [f"big{i}:" for i in range(64)]
        body = {"query": [p + " x" for p in prompts], "prompts": prompts, "seed": 0}
        big = asyncio.ensure_future(svc.get_reward(body))
        while not backend.started:  # the big request's first engine call is under way
            await asyncio.sleep(0.005)
        small = await svc.score({"query": "small", "responses": ["a"], "seed": 0})
        await big
        await svc.batcher.stop()
        return small

    assert asyncio.run(main())["mean"] == [by_length("a")]
    served = next(i for i, call in enumerate(backend.calls) if any("small" in q for q in queries(call)))
    assert served <= 2 < len(backend.calls) == 8 + 1  # FIFO would have served it after the 8 calls of the big one
    assert all(len(call) <= 8 for call in backend.calls)


def test_sets_of_options_take_turns_and_batches_respect_the_judgement_limit():
    backend = Recording()
    rm = GRM(backend)
    batcher = RewardService(rm, ServerConfig(max_batch_items=8, max_batch_judgements=8)).batcher
    k1, k4 = ScoringOptions(k=1, seed=0), ScoringOptions(k=4, seed=0)

    async def main():
        waits = [batcher.submit([Item(f"a{i}", ["x"]) for i in range(12)], k1)]
        waits += [batcher.submit([Item(f"b{i}", ["x"])], k4) for i in range(4)]
        tasks = [asyncio.ensure_future(w) for w in waits]
        await asyncio.sleep(0)  # every request queued before the first batch is taken
        batcher.start()
        results = await asyncio.gather(*tasks)
        await batcher.stop()
        return results

    results = asyncio.run(main())
    calls = [(queries(call)[0][0], len(call)) for call in backend.calls]
    assert calls == [("a", 8), ("b", 2), ("a", 4), ("b", 2)]  # turns, 8 judgements at most per call
    assert results[0] == rm.score_batch([Item(f"a{i}", ["x"]) for i in range(12)], k1)  # batching changes nothing


def test_work_is_admitted_by_tokens_not_requests():
    url_config = ServerConfig(max_work_tokens=4 * 100, batch_window_s=0.0)
    server = AppServer(create_app(GRM(Recording(delay=0.5), max_new_tokens=100), url_config))
    try:
        one = {"query": "q", "responses": ["a"]}
        r = httpx.post(f"{server.url}/score", json={**one, "k": 5})
        assert r.status_code == 400 and "may generate 500 tokens" in r.json()["error"], r.text
        assert httpx.post(f"{server.url}/score", json={**one, "k": 2, "max_new_tokens": 200}).status_code == 200

        async def burst():
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                return await asyncio.gather(*(client.post("/score", json={**one, "k": 2}) for _ in range(4)))

        codes = sorted(r.status_code for r in asyncio.run(burst()))
        assert codes.count(200) >= 2 and 503 in codes, codes
        assert httpx.get(f"{server.url}/health").json()["work_tokens"] == 0
    finally:
        server.stop()


class ThreadNoting(GRM):
    """A GRM that notes the thread each prompt is rendered in."""

    threads: list[str]

    def build_prompt(self, *args, **kwargs):
        self.threads.append(threading.current_thread().name)
        return super().build_prompt(*args, **kwargs)


def test_requests_are_read_and_checked_off_the_event_loop():
    rm = ThreadNoting(Recording())
    rm.threads = []
    server = AppServer(create_app(rm, ServerConfig()))
    try:
        assert httpx.post(f"{server.url}/score", json={"query": "q", "responses": ["a"]}).status_code == 200
    finally:
        server.stop()
    assert rm.threads and all(name != server.thread.name for name in rm.threads)
    assert rm.threads[0].startswith("grm-server")  # the check before batching, in the service's worker threads


def test_a_client_that_leaves_takes_its_waiting_items_off_the_queue():
    backend = Recording(delay=0.2)
    svc = RewardService(GRM(backend), ServerConfig(max_batch_items=1, batch_window_s=0.0))

    async def main():
        svc.batcher.start()
        prompts = [f"p{i}:" for i in range(3)]
        task = asyncio.ensure_future(svc.get_reward({"query": [p + " x" for p in prompts], "prompts": prompts}))
        while not svc.batcher.n_batches:  # the first item's engine call is under way
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.sleep(0.5)
        await svc.batcher.stop()

    asyncio.run(main())
    assert len(backend.calls) == 1 and svc.batcher.queued_items == 0
    assert [shown_responses(r.messages) for r in backend.calls[0]] == [[" x"]]
