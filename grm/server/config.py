"""The reward server's settings: batching and the limits every request is held to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServerConfig:
    """Batching and safety limits of the reward server."""

    max_batch_items: int = 64
    """Items scored in one engine call at most."""
    max_batch_judgements: int = 1024
    """Judgements (items x k) drawn in one engine call at most (an item with a larger k goes alone)."""
    batch_window_s: float = 0.01
    """How long an idle engine waits for company once a request arrives."""
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
    """Requests being scored at once (bodies received) at most; more get 503."""
    max_work_tokens: int = 2**26
    """Generation tokens that the requests in flight may draw at most, each counted as items x k x max_new_tokens
    (its own, else the model's): a request that would pass it gets 503, one that alone passes it 400."""
    worker_threads: int = 2
    """Threads that read, check and render requests and answers, off the event loop."""
    api_key: str | None = None
    default_k: int = 1
    failed_reward: float = 0.0
    """Reward sent on ``/get_reward`` for a response with no valid judgement (OpenRLHF cannot take null)."""
