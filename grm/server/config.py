"""The reward server's settings: batching and the limits every request is held to."""

from __future__ import annotations

from dataclasses import dataclass


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
