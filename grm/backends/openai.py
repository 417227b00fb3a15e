"""The OpenAI-compatible HTTP backend: ``vllm serve``, SGLang, TGI or a hosted API, via ``/chat/completions``.

Requests go out concurrently (at most ``max_concurrency`` in flight per event loop); a request that meets a 429,
a 5xx, a timeout, a dropped connection or an unreadable body is retried with exponential backoff and jitter
(honouring ``Retry-After``). A request that still fails becomes ``Completion.error`` naming the server's last
answer, so the rest of the batch is kept; only a batch in which *no* request got an answer because the server is
unreachable, overloaded or refuses us (401/403/404) raises :class:`~grm.backends.BackendUnavailableError`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import os
import random
import time
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from grm.backends.base import BackendUnavailableError, Completion, GenerationRequest
from grm.progress import progress_bar

logger = logging.getLogger(__name__)

T = TypeVar("T")
REASONING_FIELDS = ("reasoning", "reasoning_content")
"""Where OpenAI-compatible servers put a thinking model's reasoning, apart from its answer."""
REFUSED = (401, 403, 404)
"""Statuses that mean the server will refuse every request (bad key, unknown model or path)."""


class _Failure(Exception):
    """One HTTP attempt failed; ``retryable`` when trying again may help."""

    def __init__(self, message: str, retryable: bool, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message, self.retryable, self.status, self.retry_after = message, retryable, status, retry_after

    @property
    def unavailable(self) -> bool:
        """The server is unreachable, overloaded or refuses us: every other request would fail too."""
        return self.retryable or self.status in REFUSED


@dataclass(eq=False)
class Server:
    """One server of a fleet: its chat completions URL, requests in flight and health."""

    base_url: str
    outstanding: int = 0
    failures: int = 0
    down_until: float = 0.0

    @property
    def url(self) -> str:
        return self.base_url + "/chat/completions"


def _api_root(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) URL such as 'http://127.0.0.1:8000/v1', got {base_url!r}")
    return base_url.rstrip("/") + ("/v1" if parts.path in ("", "/") else "")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code, also when an event loop is already running in this thread
    (Jupyter): then it runs on a private loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="grm-http") as pool:
        return pool.submit(asyncio.run, coro).result()


class OpenAIBackend:
    """Generate through an OpenAI-compatible chat completions endpoint.

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:8000/v1`` (a bare ``http://host:port`` gets ``/v1``);
    None reads ``$OPENAI_BASE_URL``. A list of URLs is a fleet serving the same model: each HTTP call goes to the
    healthy server with the fewest requests in flight; a server whose call fails (connection, timeout, 5xx, 429) is
    skipped for ``cooldown * 2**(failures - 1)`` seconds (at most ``max_backoff``) and the call is retried on
    another at once; after the pause it gets traffic again, and one success clears its record.
    ``api_key`` defaults to ``$OPENAI_API_KEY`` (none for local servers).
    ``timeout`` bounds each HTTP request in seconds, from sending to the last byte; ``retries`` is how many times a
    failed request is tried again, waiting ``backoff * 2**attempt`` seconds (at most ``max_backoff``, with jitter).
    A request that hangs is thus given up after at most ``(retries + 1) * timeout`` plus the waits: with the
    defaults (120 s, 3 retries) about 8 minutes, then it is that completion's error. A thinking judge's long
    answers may need a longer ``timeout``.

    Samples of one request are asked for with ``n=``; ``use_n=None`` finds out whether the server honours it (a
    server that answers fewer choices, or rejects ``n`` with 400/422 while single samples work, gets the rest as
    separate requests from then on, seeded ``seed + i`` as vLLM seeds the samples of ``n``). Greedy requests are
    sent once and copied. ``Completion.n_tokens`` is the server's ``usage.completion_tokens`` for single-choice
    answers and None for multi-choice ones (usage is a total); :attr:`usage` adds everything up.
    A ``GenerationRequest.prefix`` is sent as a final assistant message with vLLM's ``continue_final_message``.
    ``extra_body`` is merged into every request (e.g. ``{"top_k": 20}`` for vLLM, or server-specific options);
    ``max_tokens_param="max_completion_tokens"`` suits hosted APIs that want that name.
    """

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str] | None = None,
        *,
        api_key: str | None = None,
        max_concurrency: int = 32,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        use_n: bool | None = None,
        max_tokens_param: str = "max_tokens",
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        progress: bool = True,
        cooldown: float = 2.0,
    ) -> None:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ValueError("no base_url given and $OPENAI_BASE_URL is not set; e.g. 'http://127.0.0.1:8000/v1'")
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if cooldown < 0:
            raise ValueError(f"cooldown must be >= 0 seconds, got {cooldown}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError(f"retries, backoff and max_backoff must be >= 0, got {retries}, {backoff}, {max_backoff}")
        self.model = model
        self.servers = [Server(_api_root(u)) for u in urls]
        self.base_url = self.servers[0].base_url
        self.url = ", ".join(server.url for server in self.servers)
        self.cooldown = cooldown
        self.max_concurrency, self.timeout, self.retries = max_concurrency, timeout, retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.use_n = use_n
        self.max_tokens_param = max_tokens_param
        self.extra_body = dict(extra_body or {})
        self.progress = progress
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]]
        self._loops = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        urls = [s.base_url for s in self.servers]
        return f"OpenAIBackend(model={self.model!r}, base_url={urls[0] if len(urls) == 1 else urls!r})"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        """Sync :meth:`agenerate`; works inside a running event loop too (see :func:`run_sync`)."""

        async def once() -> list[list[Completion]]:
            try:
                return await self.agenerate(requests)
            finally:
                await self.aclose()

        return run_sync(once())

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        """All requests concurrently (bounded by ``max_concurrency``); one list of ``n`` completions per request."""
        client, _ = self._state()
        with progress_bar(
            total=len(requests), desc="generate", unit="req", progress=self.progress and bool(requests)
        ) as bar:

            async def one(req: GenerationRequest) -> list[Completion] | _Failure:
                try:
                    return await self._request(client, req)
                except _Failure as f:
                    return f
                except Exception as e:  # whatever a server sent, it costs this request only, never the batch
                    logger.debug("request to %s failed unexpectedly", self.url, exc_info=True)
                    return _Failure(f"could not use the answer of {self.url}: {type(e).__name__}: {e}", False)
                finally:
                    bar.update(1)

            results = await asyncio.gather(*(one(r) for r in requests))
        failures = [r for r in results if isinstance(r, _Failure)]
        if requests and len(failures) == len(results) and all(f.unavailable for f in failures):
            raise BackendUnavailableError(
                f"{self.url}: none of the {len(requests)} requests got an answer; the first failed with: "
                f"{failures[0].message}"
            )
        out = []
        for req, result in zip(requests, results):
            if isinstance(result, _Failure):
                logger.warning("request to %s failed: %s", self.url, result.message)
                result = [Completion("", None, "error", result.message) for _ in range(req.n)]
            out.append(result)
        return out

    async def aclose(self) -> None:
        """Close the HTTP connections opened from the running event loop."""
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state[0].aclose()

    def _state(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """The connection pool and concurrency bound of the running event loop (asyncio objects are per loop)."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None or state[0].is_closed:
            limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
            client = httpx.AsyncClient(headers=self._headers, timeout=httpx.Timeout(self.timeout), limits=limits)
            state = self._loops[loop] = (client, asyncio.Semaphore(self.max_concurrency))
        return state

    async def _request(self, client: httpx.AsyncClient, req: GenerationRequest) -> list[Completion]:
        """The ``req.n`` completions of one request; raises :class:`_Failure` when not one could be had."""
        s = req.sampling
        n = 1 if s.temperature == 0 else req.n
        got: list[Completion] = []
        if n == 1 or self.use_n is not False:
            try:
                got = (await self._choices(client, req, n, s.seed))[:n]
            except _Failure as f:
                if n == 1 or self.use_n or f.status not in (400, 422):
                    raise
                logger.info("%s refused n=%d (%s); trying the samples one by one", self.url, n, f.message)
        if len(got) < n:
            seeds = [None if s.seed is None else s.seed + j for j in range(len(got), n)]
            singles = await asyncio.gather(
                *(self._choices(client, req, 1, seed) for seed in seeds), return_exceptions=True
            )
            for r in singles:
                if isinstance(r, BaseException) and not isinstance(r, _Failure):
                    raise r
            if self.use_n is None and any(not isinstance(r, _Failure) for r in singles):
                logger.warning("%s does not honour n=; sending samples as separate requests from now on", self.url)
                self.use_n = False
            if not got and all(isinstance(r, _Failure) for r in singles):
                raise singles[0]
            got += [Completion("", None, "error", r.message) if isinstance(r, _Failure) else r[0] for r in singles]
        return got * req.n if n == 1 else got

    async def _choices(self, client: httpx.AsyncClient, req: GenerationRequest, n: int, seed: int | None):
        """One chat completion call with ``n`` samples, retried; its choices as Completions in index order."""
        s = req.sampling
        messages = list(req.messages)
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": s.temperature}
        payload[self.max_tokens_param] = s.max_new_tokens
        if s.top_p < 1:
            payload["top_p"] = s.top_p
        if n > 1:
            payload["n"] = n
        if seed is not None:
            payload["seed"] = seed
        if s.stop:
            payload["stop"] = list(s.stop)
        if req.prefix:
            messages.append({"role": "assistant", "content": req.prefix})
            payload.update(continue_final_message=True, add_generation_prompt=False)
        payload.update(self.extra_body)
        data = await self._post(client, payload)
        choices = _in_order(data["choices"])
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        counts = {key: _count(usage.get(key)) for key in ("prompt_tokens", "completion_tokens")}
        self.usage["requests"] += 1
        for key, value in counts.items():
            self.usage[key] += value or 0
        n_tokens = counts["completion_tokens"] if len(choices) == 1 else None
        return [_completion(c, n_tokens, s.stop) for c in choices]

    async def _post(self, client: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
        """POST ``payload`` until an answer with choices comes back; the last failure is raised after
        ``retries`` more attempts, its message naming what the server said. Each attempt goes to the server
        :meth:`_pick` chooses; a retry right after a failure waits only when no other server is healthy."""
        _, slots = self._state()
        attempt = 0
        while True:
            try:
                async with slots:  # chosen once a slot is free, so the counts in flight are the current ones
                    server = self._pick()
                    server.outstanding += 1
                    try:
                        data = await self._post_once(client, server, payload)
                    finally:
                        server.outstanding -= 1
                server.failures, server.down_until = 0, 0.0
                return data
            except _Failure as f:
                if f.retryable:
                    self._mark_down(server, f)
                if not f.retryable or attempt == self.retries:
                    if f.retryable:
                        f.message += f" (gave up after {attempt + 1} attempts)"
                    raise
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                delay = delay / 2 + random.uniform(0, delay / 2)
                if f.retry_after is not None:
                    delay = max(delay, min(f.retry_after, self.max_backoff))
                if any(s is not server and s.down_until <= time.monotonic() for s in self.servers):
                    delay = 0.0  # another server is healthy: fail over at once
                logger.debug("%s: %s; retry %d in %.2f s", server.url, f.message, attempt + 1, delay)
                await asyncio.sleep(delay)
                attempt += 1

    def _pick(self) -> Server:
        """The healthy server with the fewest requests in flight (ties at random); when all are paused after
        failures, the one whose pause ends first."""
        now = time.monotonic()
        healthy = [s for s in self.servers if s.down_until <= now]
        if not healthy:
            return min(self.servers, key=lambda s: s.down_until)
        least = min(s.outstanding for s in healthy)
        return random.choice([s for s in healthy if s.outstanding == least])

    def _mark_down(self, server: Server, failure: _Failure) -> None:
        server.failures += 1
        pause = min(self.max_backoff, self.cooldown * 2 ** (server.failures - 1))
        if failure.retry_after is not None:
            pause = max(pause, min(failure.retry_after, self.max_backoff))
        server.down_until = time.monotonic() + pause
        if len(self.servers) > 1:
            logger.warning("%s failed (%s); skipping it for %.1f s", server.base_url, failure.message, pause)

    async def _post_once(self, client: httpx.AsyncClient, server: Server, payload: dict[str, Any]) -> dict[str, Any]:
        url = server.url
        try:
            async with asyncio.timeout(self.timeout):
                response = await client.post(url, json=payload)
        except (TimeoutError, httpx.TimeoutException):
            raise _Failure(f"no answer from {url} within {self.timeout:g} s", True) from None
        except httpx.TransportError as e:
            raise _Failure(f"connection to {url} failed: {type(e).__name__}: {e}", True) from None
        status, text = response.status_code, response.text
        if status != 200:
            retryable = status == 429 or status >= 500
            retry_after = _seconds(response.headers.get("retry-after")) if retryable else None
            raise _Failure(f"HTTP {status} from {url}: {_excerpt(text)}", retryable, status, retry_after)
        try:
            data = json.loads(text)
            if not isinstance(data["choices"], list) or not data["choices"]:
                raise ValueError("no choices")
            for c in data["choices"]:
                if not isinstance(c["message"], dict):
                    raise ValueError("a choice has no message")
        except (ValueError, KeyError, TypeError, RecursionError):
            raise _Failure(f"unreadable answer (HTTP 200) from {url}: {_excerpt(text)}", True, status) from None
        return data


def _in_order(choices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The choices by their ``index``, or as sent when the indices are not distinct integers."""
    indices = [c.get("index") for c in choices]
    if all(isinstance(i, int) and not isinstance(i, bool) for i in indices) and len(set(indices)) == len(indices):
        return [c for _, c in sorted(zip(indices, choices), key=lambda pair: pair[0])]
    return list(choices)


def _count(value: Any) -> int | None:
    """A token count from a server's ``usage``: a non-negative whole number, else None (unknown)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if value >= 0 else None


def _completion(choice: dict[str, Any], n_tokens: int | None, stops: Sequence[str]) -> Completion:
    """A choice as a Completion. The reasoning a server returns apart (vLLM's ``reasoning``, ``reasoning_content``
    before vLLM 0.11 and on hosted APIs) is kept as ``reasoning``; a choice with reasoning and no content was cut
    off while thinking (its text is then empty, and grm reads it as such)."""
    message, finish = choice["message"], choice.get("finish_reason")
    text, finish = message.get("content"), finish if isinstance(finish, str) else None
    reasoning = next((r for key in REASONING_FIELDS if isinstance(r := message.get(key), str)), None)
    if not isinstance(text, str):
        if reasoning is None:
            return Completion("", n_tokens, finish, f"the answer has no text (finish_reason={finish!r})")
        text = ""
    stop_reason = choice.get("stop_reason")  # vLLM and SGLang name the stop string that ended a choice
    stop = stop_reason if stop_reason in stops else None
    return Completion(text, n_tokens, finish, stop_string=stop, reasoning=reasoning)


def _excerpt(text: str, limit: int = 300) -> str:
    """The server's message: an OpenAI-style ``error.message`` when there is one, else the body, shortened."""
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message:
            text = message
    except (ValueError, AttributeError, RecursionError):
        pass
    text = " ".join(text.split()) or "(empty body)"
    return text if len(text) <= limit else text[:limit] + "..."


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
