"""An HTTP reward server: a GRM behind ``POST /score``, OpenRLHF's ``POST /get_reward`` and ``GET /health``.

Concurrent requests are batched dynamically: the first request of a batch waits at most ``batch_window_s`` for
others, then all of them (up to ``max_batch_items``) go to the GRM in one ``score_batch`` call per distinct
set of options (k, temperature...), run in a worker thread so the event loop keeps accepting requests.

Every request is checked on its own before it joins a batch (fields, types, option values, that its prompt
renders), so a bad one gets a 4xx naming the field and nothing else in the batch is affected; should a batch
still fail, its items are scored one by one (:func:`grm.isolation.score_isolated`). Limits: API key (401), body
size (413, counted as the bytes arrive), time to send the body (408, ``body_timeout_s``), responses per request
and ``/get_reward`` items per request (400), k and other options (400), requests in flight (503; counted once a
body has arrived, so slow senders cannot take the places of others). Every answer, errors included, is a JSON
response that keeps the connection open. A request whose client disconnects while it waits is dropped from the
queue. On shutdown (SIGINT/SIGTERM) uvicorn stops accepting, and every accepted request is still answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from grm.backends import BackendUnavailableError
from grm.isolation import score_isolated
from grm.jsonl import dumps, plain_id
from grm.model import GRM
from grm.scoring import JudgementRater, ScoringOptions, check_meta_rm
from grm.types import Item, Reward

logger = logging.getLogger(__name__)

OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(ScoringOptions))
"""Request fields taken as scoring options (see :class:`grm.ScoringOptions`), on ``/score`` and ``/get_reward``;
``budget`` is refused (a batch mixes requests)."""
SCORE_FIELDS = ("query", "responses", "principles", "reference", "id")
REWARD_FIELDS = ("query", "prompts", "labels")


@dataclass
class ServerConfig:
    """Batching and safety limits of the reward server."""

    max_batch_items: int = 64
    batch_window_s: float = 0.01
    max_responses: int = 32
    max_reward_items: int = 1024
    """Items (query strings) one ``/get_reward`` request may send."""
    max_k: int = 64
    max_new_tokens: int = 8192
    """The largest ``max_new_tokens`` a request may ask for."""
    max_retries: int = 8
    """The largest ``max_retries`` a request may ask for."""
    max_body_bytes: int = 4_000_000
    body_timeout_s: float = 30.0
    """Seconds a client has to send its whole body (408 after that)."""
    max_in_flight: int = 512
    api_key: str | None = None
    default_k: int = 1
    failed_reward: float = 0.0
    """Reward sent on ``/get_reward`` for a response with no valid judgement (OpenRLHF cannot take null)."""


class BadRequest(ValueError):
    """A request the server refuses with ``status`` (400 unless given) and this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class _JSON(JSONResponse):
    """A JSON response in standard JSON (NaN -> null, see :func:`grm.jsonl.dumps`), never failing to render."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


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


def scoring_options(body: dict[str, Any], config: ServerConfig, rated: bool) -> ScoringOptions:
    """The scoring options a request body asks for (``k`` defaults to ``config.default_k``), within the server's
    limits; :class:`BadRequest` naming the field otherwise. ``rated``: the server votes with a meta RM."""
    given = {name: body[name] for name in OPTION_FIELDS if body.get(name) is not None}
    for name, value in given.items():
        if isinstance(value, list | dict):
            raise BadRequest(f"{name} must be a single value, got a JSON {type(value).__name__}")
    given.setdefault("k", config.default_k)
    if "budget" in given:
        raise BadRequest(
            "budget is not taken here: the server batches requests together, so a budget would be shared with "
            "other clients' items; send adaptive (and risk) to spend fewer judgements on clear items"
        )
    try:
        options = ScoringOptions(**given)
        check_meta_rm(options, rated)
    except (TypeError, ValueError) as e:
        hint = " (this server has no meta RM)" if "k_meta" in str(e) and not rated else ""
        raise BadRequest(f"{e}{hint}") from e
    limits = {
        "k": (1, config.max_k),
        "max_new_tokens": (1, config.max_new_tokens),
        "max_retries": (0, config.max_retries),
    }
    for name, (low, high) in limits.items():
        value = getattr(options, name)
        if value is not None and value > high:
            raise BadRequest(f"{name} must be an integer in {low}..{high} on this server, got {value}")
    if options.seed is not None and not -(2**63) <= options.seed < 2**63:
        raise BadRequest(f"seed must fit in 64 bits, got {options.seed}")
    return options


def _refuse_unknown(body: dict[str, Any], path: str, fields: Sequence[str]) -> None:
    unknown = sorted(set(body) - set(fields) - set(OPTION_FIELDS))
    if unknown:
        raise BadRequest(
            f"unknown field(s) {unknown} for {path}; it takes {', '.join(fields)} and the scoring options "
            f"{', '.join(OPTION_FIELDS)}"
        )


def _item(rm: GRM, config: ServerConfig, query: Any, responses: Any, **extra: Any) -> Item:
    """A request's item, validated and checked to render (a custom template may refuse some inputs)."""
    if isinstance(responses, list) and len(responses) > config.max_responses:
        raise BadRequest(f"at most {config.max_responses} responses per request, got {len(responses)}")
    try:
        item = Item.coerce({"query": query, "responses": responses, **extra})
        rm.build_prompt(item.query, item.responses, principles=item.principles, reference=item.reference)
    except (TypeError, ValueError) as e:
        raise BadRequest(str(e)) from e
    return item


def openrlhf_items(rm: GRM, body: dict[str, Any], config: ServerConfig) -> list[Item]:
    """Items from OpenRLHF's ``{"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [...]}``.

    Each response is the query text after its prompt; labels, when given, are used as reference answers (a label
    must be a string or null; an empty string means none).
    """
    queries, prompts, labels = body.get("query"), body.get("prompts"), body.get("labels")
    if not isinstance(queries, list) or not isinstance(prompts, list) or len(queries) != len(prompts):
        raise BadRequest("/get_reward needs 'query' and 'prompts': lists of equal length (prompt + response, prompt)")
    if len(queries) > config.max_reward_items:
        raise BadRequest(f"at most {config.max_reward_items} items per /get_reward request, got {len(queries)}")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(queries)):
        raise BadRequest("'labels' must be a list as long as 'query'")
    items = []
    for i, (q, p) in enumerate(zip(queries, prompts)):
        if not isinstance(q, str) or not isinstance(p, str) or not q.startswith(p):
            raise BadRequest(f"query {i} does not start with its prompt; send the prompt text the query begins with")
        label = labels[i] if labels is not None else None
        if label is not None and not isinstance(label, str):
            raise BadRequest(f"labels[{i}] must be a string or null, got {type(label).__name__}")
        items.append(_item(rm, config, p, [q[len(p) :]], reference=label or None))
    return items


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON")


def _api_key(request: Request) -> str:
    """The key a request sends: ``Authorization: Bearer KEY`` (any case of "Bearer"), else ``X-API-Key``."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else scheme
    return given or request.headers.get("x-api-key", "")


def create_app(rm: GRM, config: ServerConfig | None = None, meta_rm: JudgementRater | None = None):
    """The FastAPI application serving ``rm``."""
    config = config or ServerConfig()
    batcher = DynamicBatcher(rm, config, meta_rm)
    state = {"in_flight": 0, "served": 0}

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="grm reward server", lifespan=lifespan)
    app.state.batcher = batcher

    def error(status: int, message: str) -> _JSON:
        return _JSON({"error": message if len(message) <= 1000 else message[:1000] + "..."}, status_code=status)

    async def read_json(request: Request) -> dict[str, Any]:
        """The request's JSON object, read as it arrives: refused as soon as it passes ``max_body_bytes`` or
        takes longer than ``body_timeout_s``."""
        limit = config.max_body_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise BadRequest(f"body of {length} bytes is over the limit of {limit}", 413)
        raw = bytearray()
        try:
            async with asyncio.timeout(config.body_timeout_s):
                async for chunk in request.stream():
                    raw += chunk
                    if len(raw) > limit:
                        raise BadRequest(f"body over the limit of {limit} bytes", 413)
        except TimeoutError:
            raise BadRequest(f"body not received within {config.body_timeout_s:g} s", 408) from None
        except ClientDisconnect:
            raise _ClientGone from None
        try:
            body = json.loads(raw, parse_constant=_reject_constant)
        except RecursionError:
            raise BadRequest("body is not readable: JSON nested too deeply") from None
        except ValueError as e:
            raise BadRequest(f"body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise BadRequest(f"body must be a JSON object, got {type(body).__name__}")
        return body

    async def until_disconnected(request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def answer(request: Request, handle: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> _JSON:
        """Check the key, read the body, take an in-flight place and run ``handle(body)``, turning every failure
        into a JSON error response (so that the connection stays usable)."""
        if config.api_key is not None and not hmac.compare_digest(_api_key(request).encode(), config.api_key.encode()):
            return error(401, "missing or wrong API key (send 'Authorization: Bearer KEY')")
        try:
            body = await read_json(request)
            if state["in_flight"] >= config.max_in_flight:
                return error(503, f"server busy: {config.max_in_flight} requests in flight; retry later")
            state["in_flight"] += 1
            try:
                work = asyncio.ensure_future(handle(body))
                watch = asyncio.ensure_future(until_disconnected(request))
                try:
                    await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    watch.cancel()
                if not work.done():
                    work.cancel()  # its items not yet scored leave the queue
                    raise _ClientGone
                result = work.result()
            finally:
                state["in_flight"] -= 1
            state["served"] += 1
            return _JSON(result)
        except BadRequest as e:
            return error(e.status, str(e))
        except _ClientGone:
            return error(499, "client disconnected")
        except BackendUnavailableError as e:
            return error(503, f"the model backend is unavailable: {e}")
        except Exception as e:
            logger.exception("request to %s failed", request.url.path)
            return error(500, f"scoring failed: {type(e).__name__}: {e}")

    @app.post("/score")
    async def score(request: Request):
        """``{"query", "responses", "principles"?, "reference"?, "id"?}`` plus any scoring option (``k``, ``seed``,
        ``temperature``, ``shuffle``, ``adaptive``, ``risk``, ``max_new_tokens``, ...; not ``budget``) -> the
        Reward as JSON, plus ``normalized`` (mean mapped onto [0, 1]), ``n_drawn`` (judgements generated) and the
        request's ``id`` if it sent one."""

        async def handle(body: dict[str, Any]) -> dict[str, Any]:
            _refuse_unknown(body, "/score", SCORE_FIELDS)
            missing = [name for name in ("query", "responses") if name not in body]
            if missing:
                raise BadRequest(f"/score needs 'query' and 'responses'; missing {missing}")
            if not plain_id(body.get("id")):
                raise BadRequest(f"id must be a string, a number or null, got a JSON {type(body['id']).__name__}")
            extra = {name: body[name] for name in ("principles", "reference") if body.get(name) is not None}
            item = _item(rm, config, body["query"], body["responses"], **extra)
            options = scoring_options(body, config, meta_rm is not None)
            (reward,) = await batcher.submit([item], options)
            out = {**reward.to_dict(), "normalized": reward.normalized(rm.score_range), "n_drawn": reward.n_drawn}
            return {**out, "id": body["id"]} if "id" in body else out

        return await answer(request, handle)

    @app.post("/get_reward")
    async def get_reward(request: Request):
        """OpenRLHF's remote reward protocol: one pointwise reward in [0, 1] per query."""

        async def handle(body: dict[str, Any]) -> dict[str, Any]:
            _refuse_unknown(body, "/get_reward", REWARD_FIELDS)
            items = openrlhf_items(rm, body, config)
            rewards = await batcher.submit(items, scoring_options(body, config, meta_rm is not None))
            values = [config.failed_reward if (n := r.normalized(rm.score_range)) is None else n[0] for r in rewards]
            return {"rewards": values, "scores": values}

        return await answer(request, handle)

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "in_flight": state["in_flight"],
            "served": state["served"],
            "batches": batcher.n_batches,
            "items": batcher.n_items,
            "largest_batch": batcher.largest_batch,
        }

    return app


def serve(
    rm: GRM,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    meta_rm: JudgementRater | None = None,
) -> None:
    """Run the server until SIGINT/SIGTERM; accepted requests are answered before it exits. Requests are not
    logged one by one (errors are)."""
    import uvicorn

    uvicorn.run(create_app(rm, config, meta_rm), host=host, port=port, log_level="info", access_log=False)
