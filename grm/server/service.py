"""The reward server's endpoints as plain methods over explicit state, free of HTTP: what the HTTP layer calls once
it has read a request's body (and what tests call directly).

Reading, checking and rendering a request (and rendering its answer) run in worker threads (:meth:`offload`), so a
large body does not hold the event loop while other requests wait. A request is admitted twice: a place in flight
once its body has arrived (:meth:`admit`, ``max_in_flight``), then, once read, its work (:meth:`reserve`: items x k x
max_new_tokens, the most tokens it may have generated, against ``max_work_tokens``).

Items go to the fair batcher through the result cache (identical seeded items judged once). RL protocol samples
(:mod:`grm.server.protocols`) without a seed of their own take the server's and are keyed by content; with
``group_size`` they are held by a :class:`~grm.integrations.groups.GroupBuffer` until their group is complete.

A judge that compares two responses at a time (a pairwise format) serves ``/score``; without ``group_size`` a
warning at start says that RL samples sent one per request cannot be judged (:meth:`ServerConfig.check_judge`). A
sample left with no other response to be compared with (not held in a group, or its group released on the time
limit with it alone) gets a 400 naming the judge and what to change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from grm.integrations.chat import ChatMarkers
from grm.integrations.groups import GroupBuffer, Sample, SampleReward, TooFewResponses, min_responses, sample_key
from grm.integrations.shaping import Shaping
from grm.model import GRM
from grm.scoring import JudgementRater, ScoringOptions, check_meta_rm
from grm.seeding import random_seed
from grm.server.batcher import FairBatcher
from grm.server.cache import ResultCache
from grm.server.config import ServerConfig
from grm.server.protocols import RLRequest, openrlhf_reply, openrlhf_request, sample_reply, sample_request
from grm.server.validation import BadRequest, score_request
from grm.types import Item

T = TypeVar("T")
logger = logging.getLogger(__name__)

ALONE_ADVICE = (
    "set --group-size to the samples per prompt, send a prompt's samples within --group-wait-ms of each other (or "
    "raise it), or send them in one request (/reward's group form)"
)
"""What a client or operator can do about a sample left alone with a pairwise judge."""


class RewardService:
    """A GRM served: the batcher, the cache, the group buffer, the admission of requests and each endpoint."""

    def __init__(self, rm: GRM, config: ServerConfig | None = None, meta_rm: JudgementRater | None = None) -> None:
        self.rm, self.config, self.meta_rm = rm, config or ServerConfig(), meta_rm
        c = self.config
        if note := c.check_judge(rm.judge):
            logger.warning("%s", note)
        check_meta_rm(ScoringOptions(k=c.default_k, **c.default_options), rated=meta_rm is not None)
        self.seed = c.seed if c.seed is not None else random_seed()
        self.batcher = FairBatcher(rm, c, meta_rm)
        self.cache = ResultCache(self.batcher, c.cache_size, c.cache_ttl_s)
        self.failed = 0.0 if c.failed_reward == "min" else float(c.failed_reward)
        self.shaping = Shaping(c.length_penalty, c.failed_reward, fallback=self.failed)
        self.groups = GroupBuffer(
            self.cache.score,
            size=c.group_size,
            wait_s=c.group_wait_s,
            n_max=c.n_max,
            score_range=rm.score_range,
            shaping=self.shaping,
            retain=c.cache_size,
            retain_s=c.cache_ttl_s,
            judge_format=rm.judge,
            advice=ALONE_ADVICE,
        )
        tokenizer = getattr(rm.backend, "tokenizer", None)
        self.markers = ChatMarkers.load(c.policy_tokenizer) if c.policy_tokenizer else ChatMarkers.of(tokenizer)
        self.in_flight = self.served = self.work = 0
        self.pool = ThreadPoolExecutor(c.worker_threads, thread_name_prefix="grm-server")

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

    def work_of(self, n_items: int, options: ScoringOptions) -> int:
        """The most tokens scoring ``n_items`` items may generate (resamples aside): items x k x max_new_tokens."""
        return n_items * options.k * (options.max_new_tokens or self.rm.max_new_tokens)

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
        generated) and the request's ``id`` if it sent one. A string or integer ``id`` seeds the item, as an
        :class:`grm.Item`'s id does in ``score_batch``."""
        request = await self.offload(score_request, self.rm, self.config, body, self.rated)
        key = request.id if isinstance(request.id, str | int) and not isinstance(request.id, bool) else 0
        with self.reserve(self.work_of(1, request.options)):  # seeded by its id, as an Item is (else as item 0)
            (reward,) = await self.cache.score([request.item], request.options, [key])
        out = {**reward.to_dict(), "normalized": reward.normalized(self.rm.score_range), "n_drawn": reward.n_drawn}
        return {**out, "id": request.id} if request.has_id else out

    async def get_reward(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/get_reward`` (OpenRLHF, :mod:`grm.server.protocols`): ``rewards``, ``scores`` and ``extra_logs``."""
        request = await self.offload(openrlhf_request, self.rm, self.config, self.markers, body, self.rated)
        return openrlhf_reply(await self.rl_rewards(request), self.failed)

    async def reward(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/reward`` (slime's sample shape, one sample or a group): one answer, or ``{"rewards", "results"}``."""
        request = await self.offload(sample_request, self.rm, self.config, self.markers, body, self.rated)
        results = await self.rl_rewards(request)
        if not request.grouped:
            return sample_reply(results[0], self.failed)
        replies = [sample_reply(r, self.failed) for r in results]
        return {"rewards": [r["reward"] for r in replies], "results": replies}

    async def rl_rewards(self, request: RLRequest) -> list[SampleReward]:
        """The rewards of an RL request's samples: as one group (its group form), held with their groups
        (``group_size``), or each alone; with the server's seed and keys by content when it sent no seed."""
        options = request.options if request.seeded else request.options.replace(seed=self.seed)
        with self.reserve(self.work_of(len(request.samples), options)):
            try:
                if request.grouped:
                    return await self.groups.judge_group(request.samples, options)
                if self.config.group_size > 1:
                    return list(await asyncio.gather(*(self.groups.reward(s, options) for s in request.samples)))
            except TooFewResponses as e:
                raise BadRequest(str(e)) from None
            if min_responses(self.rm.judge) > 1:
                raise BadRequest(
                    f"the {self.rm.judge.name!r} judge compares two responses at a time and needs at least two, but "
                    "samples are not held in groups here (group size 0), so this one would be judged alone; "
                    + ALONE_ADVICE
                )
            return await self.alone(request.samples, options, request.seeded)

    async def alone(self, samples: Sequence[Sample], options: ScoringOptions, seeded: bool) -> list[SampleReward]:
        """Each sample judged alone, keyed by its place in the request when the request is seeded (as
        ``score_batch`` keys), else by its content; shaped within the request."""
        items = [Item(s.query, [s.response], reference=s.reference) for s in samples]
        keys = list(range(len(items))) if seeded else [sample_key(s) for s in samples]
        rewards = await self.cache.score(items, options, keys)
        scores = [None if (n := r.normalized(self.rm.score_range)) is None else n[0] for r in rewards]
        values = self.shaping.apply(scores, [len(s.response) for s in samples])
        return [SampleReward(r, 0, v, s, 1) for r, v, s in zip(rewards, values, scores)]

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "seed": self.seed,
            "in_flight": self.in_flight,
            "served": self.served,
            "work_tokens": self.work,
            "queued_items": self.batcher.queued_items,
            "batches": self.batcher.n_batches,
            "items": self.batcher.n_items,
            "largest_batch": self.batcher.largest_batch,
            "groups": self.groups.counters(),
            "cache": self.cache.counters(),
        }

    async def drain(self) -> None:
        """Judge the groups still waiting, finish what is queued, then stop the batcher and the worker threads."""
        await self.groups.drain()
        await self.batcher.stop()
        self.pool.shutdown(wait=False)
