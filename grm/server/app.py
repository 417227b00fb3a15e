"""The HTTP layer: the API key, reading a body within its limits, a place in flight, a client that leaves, and
every failure turned into a JSON error that keeps the connection open. The endpoints themselves are
:class:`~grm.server.service.RewardService` methods."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from grm.extras import raise_missing_extra

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.requests import ClientDisconnect
except ModuleNotFoundError as e:
    raise_missing_extra(e, "grm.server")

from grm.backends import BackendUnavailableError
from grm.jsonl import dumps
from grm.model import GRM
from grm.scoring import JudgementRater
from grm.server.config import ServerConfig
from grm.server.service import RewardService
from grm.server.validation import BadRequest, parse_body

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def render(content: Any) -> bytes:
    """``content`` in standard JSON (NaN -> null, see :func:`grm.jsonl.dumps`), UTF-8 encoded."""
    return dumps(content).encode("utf-8")


class JSON(JSONResponse):
    """A JSON response rendered by :func:`render`."""

    def render(self, content: Any) -> bytes:
        return render(content)


def error(status: int, message: str) -> JSON:
    """A JSON error response, its message cut to 1,000 characters."""
    return JSON({"error": message if len(message) <= 1000 else message[:1000] + "..."}, status_code=status)


def api_key(request: Request) -> str:
    """The key a request sends: ``Authorization: Bearer KEY`` (any case of "Bearer"), else ``X-API-Key``."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else scheme
    return given or request.headers.get("x-api-key", "")


async def read_body(request: Request, config: ServerConfig) -> bytes:
    """The request's body, read as it arrives: refused as soon as it passes ``max_body_bytes`` (413) or takes longer
    than ``body_timeout_s`` (408)."""
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
        raise ClientGone from None
    return bytes(raw)


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def while_connected(request: Request, work: Awaitable[Any]) -> Any:
    """``work``'s result; if the client disconnects first, ``work`` is cancelled (its items not yet scored leave the
    queue) and :class:`ClientGone` raised."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        raise ClientGone
    return task.result()


async def answer(service: RewardService, request: Request, handle: Handler) -> Response:
    """Check the key, read the body, take a place in flight and run ``handle(body)``, turning every failure into a
    JSON error response (so that the connection stays usable)."""
    key = service.config.api_key
    if key is not None and not hmac.compare_digest(api_key(request).encode(), key.encode()):
        return error(401, "missing or wrong API key (send 'Authorization: Bearer KEY')")
    try:
        body = await service.offload(parse_body, await read_body(request, service.config))
        with service.admit():
            result = await while_connected(request, handle(body))
        return Response(await service.offload(render, result), media_type="application/json")
    except BadRequest as e:
        return error(e.status, str(e))
    except ClientGone:
        return error(499, "client disconnected")
    except BackendUnavailableError as e:
        return error(503, f"the model backend is unavailable: {e}")
    except Exception as e:
        logger.exception("request to %s failed", request.url.path)
        return error(500, f"scoring failed: {type(e).__name__}: {e}")


def create_app(rm: GRM, config: ServerConfig | None = None, meta_rm: JudgementRater | None = None) -> FastAPI:
    """The FastAPI application serving ``rm`` (its service is ``app.state.service``)."""
    service = RewardService(rm, config, meta_rm)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        yield
        await service.drain()

    app = FastAPI(title="grm reward server", lifespan=lifespan)
    app.state.service = service

    @app.post("/score")
    async def score(request: Request) -> Response:
        """``{"query", "responses", "principles"?, "reference"?, "id"?}`` plus any scoring option (``k``, ``seed``,
        ``temperature``, ``shuffle``, ``adaptive``, ``risk``, ``max_new_tokens``, ...; not ``budget``) -> the
        Reward as JSON, plus ``normalized``, ``n_drawn`` and the request's ``id`` if it sent one."""
        return await answer(service, request, service.score)

    @app.post("/get_reward")
    async def get_reward(request: Request) -> Response:
        """OpenRLHF's remote reward protocol: a reward in [0, 1] per query, with ``scores`` and ``extra_logs``."""
        return await answer(service, request, service.get_reward)

    @app.post("/reward")
    async def reward(request: Request) -> Response:
        """slime's remote reward protocol: ``{"prompt", "response", "label"}`` (or a group of them) -> ``reward``."""
        return await answer(service, request, service.reward)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return service.health()

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
    try:
        import uvicorn
    except ModuleNotFoundError as e:
        raise_missing_extra(e, "grm.server.serve")

    uvicorn.run(create_app(rm, config, meta_rm), host=host, port=port, log_level="info", access_log=False)
