"""An async client for ``grm serve``: what in-process reward functions (verl's reward loop, slime's custom reward
function) call the server with.

Requests that fail for a reason a retry can fix (a connection error, a timeout, 408, 429, 5xx) are retried
``retries`` times with a growing pause; an identical retry costs the server nothing more (its result cache and
group buffer answer it). Anything else raises :class:`RewardServerError` with the server's message.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import httpx

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
T = TypeVar("T")
_PER_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = weakref.WeakKeyDictionary()


def loop_local(key: Hashable, make: Callable[[], T]) -> T:
    """The object made by ``make`` for ``key`` in the running event loop, made once per loop (a client holds
    connections of the loop it was made in)."""
    objects = _PER_LOOP.setdefault(asyncio.get_running_loop(), {})
    if key not in objects:
        objects[key] = make()
    return objects[key]


class RewardServerError(RuntimeError):
    """The reward server refused a request, or could not be reached after the retries."""


class AsyncRewardClient:
    """Calls a ``grm serve`` at ``url`` (default ``$GRM_URL``, else ``http://127.0.0.1:8000``) with ``api_key``
    (default ``$GRM_API_KEY``). One client per event loop: it holds a connection pool of that loop."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        retries: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        self.url = (url or os.environ.get("GRM_URL") or "http://127.0.0.1:8000").rstrip("/")
        key = api_key if api_key is not None else os.environ.get("GRM_API_KEY")
        self.retries, self.backoff_s = retries, backoff_s
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON answer of ``POST path``, retrying what a retry can fix."""
        for attempt in range(self.retries + 1):
            try:
                response = await self._client.post(path, json=body)
            except httpx.TransportError as e:
                error = f"{type(e).__name__}: {e}"
            else:
                if response.status_code == 200:
                    return response.json()
                error = f"{response.status_code}: {response.text[:500]}"
                if response.status_code not in RETRY_STATUSES:
                    break
            if attempt < self.retries:
                await asyncio.sleep(self.backoff_s * 2**attempt)
        raise RewardServerError(f"grm server at {self.url}{path} answered {error}")

    async def reward(self, prompt: Any, response: str, label: str | None = None, **options: Any) -> dict[str, Any]:
        """One sample's answer from ``/reward``: ``reward``, ``score``, ``n_valid``, ``n_drawn``, ``group_size``.
        ``prompt`` is chat messages or (templated) text; ``options`` are scoring options (``k``, ``seed``...)."""
        return await self.post("/reward", {"prompt": prompt, "response": response, "label": label, **options})

    async def group(self, samples: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        """A whole group's answer from ``/reward``: ``rewards`` and ``results`` (one per sample)."""
        return await self.post("/reward", {"samples": samples, **options})

    async def score(self, query: Any, responses: list[str], **fields: Any) -> dict[str, Any]:
        """``/score``: the voted Reward of ``responses``, with ``normalized``."""
        return await self.post("/score", {"query": query, "responses": responses, **fields})

    async def aclose(self) -> None:
        await self._client.aclose()
