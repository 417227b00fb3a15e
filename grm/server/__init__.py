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

The pieces, each usable without HTTP: :mod:`~grm.server.config` (the limits), :mod:`~grm.server.validation`
(a body read into items and options), :mod:`~grm.server.batcher` (dynamic batching),
:mod:`~grm.server.service` (each endpoint as a method over explicit state) and :mod:`~grm.server.app` (HTTP).
"""

from grm.server.app import create_app, serve
from grm.server.batcher import DynamicBatcher
from grm.server.config import ServerConfig
from grm.server.service import RewardService
from grm.server.validation import OPTION_FIELDS, BadRequest, openrlhf_items, scoring_options

__all__ = [
    "OPTION_FIELDS",
    "BadRequest",
    "DynamicBatcher",
    "RewardService",
    "ServerConfig",
    "create_app",
    "openrlhf_items",
    "scoring_options",
    "serve",
]
