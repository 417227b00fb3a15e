"""The reward server's endpoints as plain methods over explicit state, free of HTTP: what the HTTP layer calls once
it has read a request's body (and what tests call directly).

Reading, checking and rendering a request (and rendering its answer) run in worker threads (:meth:`offload`), so a
large body does not hold the event loop while other requests wait. A request is admitted twice: a place in flight
once its body has arrived (:meth:`admit`, ``max_in_flight``), then, once read, its work (:meth:`reserve`: items x k x
max_new_tokens, the most tokens it may have generated, against ``max_work_tokens``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from grm.model import GRM
from grm.scoring import JudgementRater, ScoringOptions
from grm.server.batcher import FairBatcher
from grm.server.config import ServerConfig
from grm.server.validation import BadRequest, reward_request, score_request
from grm.types import Item

T = TypeVar("T")


class RewardService:
    """A GRM served: the batcher, the admission of requests and each endpoint's handler."""

    def __init__(self, rm: GRM, config: ServerConfig | None = None, meta_rm: JudgementRater | None = None) -> None:
        self.rm, self.config, self.meta_rm = rm, config or ServerConfig(), meta_rm
        self.batcher = FairBatcher(rm, self.config, meta_rm)
        self.in_flight = self.served = self.work = 0
        self.pool = ThreadPoolExecutor(self.config.worker_threads, thread_name_prefix="grm-server")

    @property
    def rated(self) -> bool:
        """Whether votes are guided by a meta RM."""
        return self.meta_rm is not None

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in one of the service's worker threads."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    @contextmanager
    def admit(self) -> Iterator[None]:
        """A place in flight for one request (503 when all are taken), counted as served if it ends without error."""
        if self.in_flight >= self.config.max_in_flight:
            raise BadRequest(f"server busy: {self.config.max_in_flight} requests in flight; retry later", 503)
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
        self.served += 1

    def work_of(self, items: Sequence[Item], options: ScoringOptions) -> int:
        """The most tokens scoring ``items`` may generate (resamples aside): items x k x max_new_tokens."""
        return len(items) * options.k * (options.max_new_tokens or self.rm.max_new_tokens)

    @contextmanager
    def reserve(self, work: int) -> Iterator[None]:
        """Hold ``work`` tokens of ``max_work_tokens`` while a request is scored: 400 if it alone is over the limit,
        503 if the requests in flight leave too little."""
        limit = self.config.max_work_tokens
        if work > limit:
            raise BadRequest(
                f"the request may generate {work:,} tokens (items x k x max_new_tokens), over this server's limit of "
                f"{limit:,}; send fewer items, a smaller k or a smaller max_new_tokens"
            )
        if self.work + work > limit:
            raise BadRequest(
                f"server busy: the requests in flight may generate {self.work:,} of {limit:,} tokens; retry later", 503
            )
        self.work += work
        try:
            yield
        finally:
            self.work -= work

    async def score(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/score``: the Reward as JSON, plus ``normalized`` (mean mapped onto [0, 1]), ``n_drawn`` (judgements
        generated) and the request's ``id`` if it sent one."""
        request = await self.offload(score_request, self.rm, self.config, body, self.rated)
        with self.reserve(self.work_of([request.item], request.options)):
            (reward,) = await self.batcher.submit([request.item], request.options)
        out = {**reward.to_dict(), "normalized": reward.normalized(self.rm.score_range), "n_drawn": reward.n_drawn}
        return {**out, "id": request.id} if request.has_id else out

    async def get_reward(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/get_reward`` (OpenRLHF): one pointwise reward in [0, 1] per query."""
        items, options = await self.offload(reward_request, self.rm, self.config, body, self.rated)
        with self.reserve(self.work_of(items, options)):
            rewards = await self.batcher.submit(items, options)
        failed = self.config.failed_reward
        values = [failed if (n := r.normalized(self.rm.score_range)) is None else n[0] for r in rewards]
        return {"rewards": values, "scores": values}

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "in_flight": self.in_flight,
            "served": self.served,
            "work_tokens": self.work,
            "queued_items": self.batcher.queued_items,
            "batches": self.batcher.n_batches,
            "items": self.batcher.n_items,
            "largest_batch": self.batcher.largest_batch,
        }

    def close(self) -> None:
        self.pool.shutdown(wait=False)
