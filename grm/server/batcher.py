"""Dynamic batching: items of concurrent requests scored together, one engine call per batch and set of options."""

from __future__ import annotations

import asyncio
import logging
import time
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
    """One item to score; ``key`` is its place in its request, which seeds it with the request's ``seed``."""

    item: Item
    options: ScoringOptions
    key: int
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """Collects items from concurrent requests and scores them together."""

    def __init__(self, rm: GRM, config: ServerConfig, meta_rm: JudgementRater | None = None) -> None:
        self.rm, self.config, self.meta_rm = rm, config, meta_rm
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.n_batches = self.n_items = self.largest_batch = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        while not self.queue.empty():
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()

    async def submit(self, items: list[Item], options: ScoringOptions) -> list[Reward]:
        """Queue ``items`` and wait for their rewards; cancelling the wait takes those not yet scored off the queue.
        Each item is seeded by the request's seed and its place in ``items``, so whatever other requests share
        its batch, a seeded request gets what ``GRM.score_batch(items, options)`` gives."""
        loop = asyncio.get_running_loop()
        jobs = [_Job(item, options, key, loop.create_future()) for key, item in enumerate(items)]
        for job in jobs:
            self.queue.put_nowait(job)
        return list(await asyncio.gather(*(j.future for j in jobs)))

    async def _next(self) -> _Job:
        while True:
            job = await self.queue.get()
            if not job.future.done():  # a cancelled request's items are skipped
                return job

    async def _run(self) -> None:
        while True:
            batch = [await self._next()]
            deadline = time.monotonic() + self.config.batch_window_s
            while len(batch) < self.config.max_batch_items:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._next(), timeout))
                except TimeoutError:
                    break
            groups: dict[ScoringOptions, list[_Job]] = {}
            for job in batch:
                groups.setdefault(job.options, []).append(job)
            for options, jobs in groups.items():
                try:
                    await self._score(jobs, options)
                except Exception as e:  # never let the loop die: every later request would wait forever
                    logger.exception("scoring a batch of %d failed", len(jobs))
                    _settle(jobs, [e] * len(jobs))

    async def _score(self, jobs: list[_Job], options: ScoringOptions) -> None:
        self.n_batches += 1
        self.n_items += len(jobs)
        self.largest_batch = max(self.largest_batch, len(jobs))
        try:
            results = await asyncio.to_thread(
                score_isolated,
                self.rm,
                [j.item for j in jobs],
                keys=[j.key for j in jobs],
                options=options,
                meta_rm=self.meta_rm,
            )
        except BackendUnavailableError as e:
            results = [e] * len(jobs)
        _settle(jobs, results)


def _settle(jobs: Sequence[_Job], results: Sequence[Reward | BaseException]) -> None:
    for job, result in zip(jobs, results):
        if job.future.done():
            continue
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)
