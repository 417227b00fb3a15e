"""The reward server's endpoints as plain methods over explicit state, free of HTTP: what the HTTP layer calls once
it has read a request's body (and what tests call directly)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from grm.model import GRM
from grm.scoring import JudgementRater
from grm.server.batcher import DynamicBatcher
from grm.server.config import ServerConfig
from grm.server.validation import BadRequest, reward_request, score_request


class RewardService:
    """A GRM served: the batcher, the admission of requests and each endpoint's handler."""

    def __init__(self, rm: GRM, config: ServerConfig | None = None, meta_rm: JudgementRater | None = None) -> None:
        self.rm, self.config, self.meta_rm = rm, config or ServerConfig(), meta_rm
        self.batcher = DynamicBatcher(rm, self.config, meta_rm)
        self.in_flight = self.served = 0

    @property
    def rated(self) -> bool:
        """Whether votes are guided by a meta RM."""
        return self.meta_rm is not None

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

    async def score(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/score``: the Reward as JSON, plus ``normalized`` (mean mapped onto [0, 1]), ``n_drawn`` (judgements
        generated) and the request's ``id`` if it sent one."""
        request = score_request(self.rm, self.config, body, self.rated)
        (reward,) = await self.batcher.submit([request.item], request.options)
        out = {**reward.to_dict(), "normalized": reward.normalized(self.rm.score_range), "n_drawn": reward.n_drawn}
        return {**out, "id": request.id} if request.has_id else out

    async def get_reward(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/get_reward`` (OpenRLHF): one pointwise reward in [0, 1] per query."""
        items, options = reward_request(self.rm, self.config, body, self.rated)
        rewards = await self.batcher.submit(items, options)
        failed = self.config.failed_reward
        values = [failed if (n := r.normalized(self.rm.score_range)) is None else n[0] for r in rewards]
        return {"rewards": values, "scores": values}

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "in_flight": self.in_flight,
            "served": self.served,
            "batches": self.batcher.n_batches,
            "items": self.batcher.n_items,
            "largest_batch": self.batcher.largest_batch,
        }
