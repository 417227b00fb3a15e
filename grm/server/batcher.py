"""Fair dynamic batching: the items of concurrent requests scored together, no request waiting behind another's bulk.

Each request's items wait in a queue of their own. An engine call takes the requests that share one set of options
(``k``, ``temperature``...) and fills its batch round-robin, one item of each request in turn, up to
``max_batch_items`` items and ``max_batch_judgements`` judgements (items x k). Sets of options take turns, call by
call. So a small request arriving while a big one is being scored waits for the engine call in progress and is
served by the next (or, under several sets of options at once, within as many calls as there are sets); a
1,024-item request no longer holds the queue until all its items are done. When the engine is idle, the first
request waits at most ``batch_window_s`` for company.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from grm.backends import BackendUnavailableError
from grm.isolation import score_isolated
from grm.model import GRM
from grm.scoring import JudgementRater, ScoringOptions
from grm.server.config import ServerConfig
from grm.types import Item, Reward

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    """One item to score under ``key`` (its seeding key, with the request's seed)."""

    item: Item
    key: int | str
    future: asyncio.Future = field(repr=False)


@dataclass
class _Request:
    """A request's items not yet taken into a batch."""

    jobs: deque[_Job]


class FairBatcher:
    """Collects the items of concurrent requests and scores them together, fairly (see the module docs)."""

    def __init__(self, rm: GRM, config: ServerConfig, meta_rm: JudgementRater | None = None) -> None:
        self.rm, self.config, self.meta_rm = rm, config, meta_rm
        self._waiting: dict[ScoringOptions, deque[_Request]] = {}  # in turn order, both levels
        self._pending: dict[asyncio.Future, _Job] = {}  # queued, not yet taken into a batch
        self._arrived = asyncio.Event()
        self._busy = False
        self.n_batches = self.n_items = self.largest_batch = 0
        self._task: asyncio.Task | None = None

    @property
    def queued_items(self) -> int:
        """Items waiting for a batch (those of requests whose client left included until they are reached)."""
        return sum(len(r.jobs) for requests in self._waiting.values() for r in requests)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        while self._waiting or self._busy:
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()

    def enqueue(
        self, items: Sequence[Item], options: ScoringOptions, keys: Sequence[int | str] | None = None
    ) -> list[asyncio.Future]:
        """Queue ``items`` as one request; one future per item, settled with its Reward (or the error that failed
        it). Each item is seeded by ``options.seed`` and its key (default: its place in ``items``), so whatever
        other requests share its batch, it gets what ``GRM.score_batch(items, options, keys=keys)`` gives it."""
        loop = asyncio.get_running_loop()
        keys = range(len(items)) if keys is None else keys
        jobs = deque(_Job(item, key, loop.create_future()) for item, key in zip(items, keys))
        if jobs:
            self._waiting.setdefault(options, deque()).append(_Request(jobs))
            self._pending.update((job.future, job) for job in jobs)
            self._arrived.set()
        return [job.future for job in jobs]

    def withdraw(self, future: asyncio.Future) -> bool:
        """Take an item off the queue if no engine call has taken it yet (True); one already taken is scored and its
        future settled (its error, if any, marked as seen)."""
        if self._pending.pop(future, None) is not None:
            future.cancel()
            return True
        future.add_done_callback(_retrieve)
        return False

    async def submit(
        self, items: Sequence[Item], options: ScoringOptions, keys: Sequence[int | str] | None = None
    ) -> list[Reward]:
        """:meth:`enqueue` and wait for the rewards; cancelling the wait takes the items not yet scored off the
        queue."""
        futures = self.enqueue(items, options, keys)
        try:
            return list(await asyncio.gather(*futures))
        except asyncio.CancelledError:
            for future in futures:
                self.withdraw(future)
            raise

    def take(self) -> tuple[ScoringOptions, list[_Job]] | None:
        """The next batch: the first set of options in turn, its requests' items taken round-robin within the
        limits; that set of options then goes to the back, as does the request served first. None: nothing waits."""
        while self._waiting:
            options, requests = next(iter(self._waiting.items()))
            del self._waiting[options]
            per_item = options.k
            max_items = max(1, min(self.config.max_batch_items, self.config.max_batch_judgements // per_item))
            batch: list[_Job] = []
            while requests and len(batch) < max_items:
                for request in list(requests):
                    while request.jobs and request.jobs[0].future.done():  # its client left
                        request.jobs.popleft()
                    if request.jobs and len(batch) < max_items:
                        batch.append(request.jobs.popleft())
                        self._pending.pop(batch[-1].future, None)
                    if not request.jobs:
                        requests.remove(request)
            if requests:
                requests.rotate(-1)
                self._waiting[options] = requests
            if batch:
                return options, batch
        return None

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                await asyncio.sleep(self.config.batch_window_s)  # an idle engine waits a moment for company
            taken = self.take()
            if taken is None:
                continue
            options, jobs = taken
            self._busy = True
            try:
                await self._score(jobs, options)
            except Exception as e:  # never let the loop die: every later request would wait forever
                logger.exception("scoring a batch of %d failed", len(jobs))
                _settle(jobs, [e] * len(jobs))
            finally:
                self._busy = False

    async def _score(self, jobs: list[_Job], options: ScoringOptions) -> None:
        self.n_batches += 1
        self.n_items += len(jobs)
        self.largest_batch = max(self.largest_batch, len(jobs))
        started = time.monotonic()
        try:
            results = await asyncio.to_thread(
                score_isolated,
                self.rm,
                [j.item for j in jobs],
                keys=[j.key for j in jobs],
                options=options,
                meta_rm=self.meta_rm,
            )
        except BackendUnavailableError as e:  # every request of the batch gets a 503
            results = [e] * len(jobs)
        logger.debug("scored %d items in %.2f s", len(jobs), time.monotonic() - started)
        _settle(jobs, results)


def _retrieve(future: asyncio.Future) -> None:
    """Mark a future's exception as seen (its caller has left)."""
    if not future.cancelled():
        future.exception()


def _settle(jobs: Sequence[_Job], results: Sequence[Reward | BaseException]) -> None:
    for job, result in zip(jobs, results):
        if job.future.done():
            continue
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)
