"""An HTTP reward server: a GRM behind ``POST /score``, OpenRLHF's ``POST /get_reward``, slime's ``POST /reward``
(one sample ``{prompt, response, label}``, or a group) and ``GET /health``.

RL frameworks call a reward once per sample; with ``group_size`` the samples of one prompt are held until their
group is complete (or ``group_wait_s`` has passed) and judged together, listwise
(:class:`grm.integrations.groups.GroupBuffer`), and identical seeded requests (retries) are judged once
(:mod:`~grm.server.cache`). RL requests without a seed take the server's (``seed``, drawn at start when unset).

Concurrent requests are batched dynamically and fairly (:mod:`~grm.server.batcher`): each request's items wait in a
queue of their own, an engine call takes the requests sharing one set of options round-robin (at most
``max_batch_items`` items and ``max_batch_judgements`` judgements), and sets of options take turns, so a small request
waits for the engine call in progress, not for a big request's every item. Scoring runs in a worker thread, and so
do reading, checking and rendering requests and answers, so the event loop keeps accepting requests.

Every request is checked on its own before it joins a batch (fields, types, option values, that its prompt
renders), so a bad one gets a 4xx naming the field and nothing else in the batch is affected; should a batch
still fail, its items are scored one by one (:func:`grm.isolation.score_isolated`). Limits: API key (401), body
size (413, counted as the bytes arrive), time to send the body (408, ``body_timeout_s``), responses per request
and ``/get_reward`` items per request (400), k and other options (400), requests in flight (503; counted once a
body has arrived, so slow senders cannot take the places of others) and the work in flight (items x k x
max_new_tokens against ``max_work_tokens``: 503, or 400 for a request over the limit on its own). Every answer,
errors included, is a JSON response that keeps the connection open. A request whose client disconnects while it
waits is dropped from the queue. On shutdown (SIGINT/SIGTERM) uvicorn stops accepting, and every accepted request is
still answered.

The pieces, each usable without HTTP: :mod:`~grm.server.config` (the limits), :mod:`~grm.server.validation`
(a body read into items and options), :mod:`~grm.server.protocols` (the RL frameworks' bodies and replies),
:mod:`~grm.server.batcher` (fair dynamic batching), :mod:`~grm.server.cache` (identical requests judged once),
:mod:`~grm.server.service` (each endpoint as a method over explicit state, admission) and :mod:`~grm.server.app`
(HTTP).
"""

from grm.server.app import create_app, serve
from grm.server.batcher import FairBatcher
from grm.server.config import ServerConfig
from grm.server.service import RewardService
from grm.server.validation import OPTION_FIELDS, BadRequest, scoring_options

__all__ = [
    "OPTION_FIELDS",
    "BadRequest",
    "FairBatcher",
    "RewardService",
    "ServerConfig",
    "create_app",
    "scoring_options",
    "serve",
]
