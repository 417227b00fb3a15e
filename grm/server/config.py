"""The reward server's settings: batching and the limits every request is held to."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any

from grm.integrations.groups import min_responses
from grm.judges import JudgeFormat


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
    default_options: dict[str, Any] = field(default_factory=dict)
    """Scoring options (:class:`grm.ScoringOptions` fields but ``k``, ``seed`` and ``budget``) that a request which
    names none gets: ``grm serve``'s scoring flags (``--temperature``, ``--k-meta``, ``--adaptive``, ...)."""
    seed: int | None = None
    """The seed of RL protocol requests (``/get_reward``, ``/reward``) that send none; None: drawn when the server
    starts (reported by ``/health``). Their items are then keyed by content, so a sample's reward does not depend
    on what else was sent with it."""
    group_size: int = 0
    """Samples of one prompt held until this many have arrived, then judged together (listwise, chunks of at most
    ``n_max``); 0 or 1: each sample is judged alone, as it comes."""
    group_wait_s: float = 30.0
    """A group not complete this long after its first sample is judged with the samples it has."""
    n_max: int = 8
    """Responses judged together at most (a bigger group is judged in balanced chunks)."""
    cache_size: int = 4096
    """Results of seeded items kept for identical requests (retries): they are judged once; 0: no cache."""
    cache_ttl_s: float = 600.0
    """How long a result (a judged group included) answers identical requests."""
    policy_tokenizer: str | None = None
    """The tokenizer (path or hub name) whose special tokens de-template the policy's text; None: the GRM's (and the
    ``<|name|>`` forms)."""
    length_penalty: float = 0.0
    """Reward shaping within a group (:class:`grm.integrations.shaping.Shaping`): 0 is off."""
    failed_reward: float | str = 0.0
    """Reward of a sample with no valid judgement (RL protocols cannot take null): a number, or ``"min"`` (its
    group's lowest, 0 if none was scored)."""

    def __post_init__(self) -> None:
        lows = {"max_batch_items": 1, "max_batch_judgements": 1, "max_responses": 1, "max_reward_items": 1}
        lows |= {"max_k": 1, "max_new_tokens": 1, "max_retries": 0, "max_body_bytes": 1, "max_in_flight": 1}
        lows |= {"max_work_tokens": 1, "worker_threads": 1, "default_k": 1, "group_size": 0, "n_max": 1}
        lows |= {"cache_size": 0}
        for name, low in lows.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_s") or f.name == "length_penalty":
                if (
                    isinstance(value, bool)
                    or not isinstance(value, numbers.Real)
                    or not (math.isfinite(value) and value >= 0)
                ):
                    raise ValueError(f"{f.name} must be a number >= 0, got {value!r}")
        seed = self.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"seed must be a whole number or None, got {seed!r}")
        failed = self.failed_reward
        if failed != "min" and (
            isinstance(failed, bool) or not isinstance(failed, numbers.Real) or not math.isfinite(failed)
        ):
            raise ValueError(f"failed_reward must be a number or 'min', got {failed!r}")

    def check_judge(self, judge: JudgeFormat) -> str | None:
        """Check these settings against ``judge``. A judge that compares two responses at a time
        (:func:`~grm.integrations.groups.min_responses`): ValueError where a group's chunks hold fewer than 3
        (``n_max``, which can leave one response alone); and, without ``group_size``, a warning to log (returned):
        ``/score`` works, but the single samples of ``/get_reward`` and ``/reward`` get an error each."""
        if min_responses(judge) < 2:
            return None
        if self.n_max < 3:
            raise ValueError(
                f"the {judge.name!r} judge compares two responses at a time: --n-max (n_max) must be at least 3, "
                f"since a group split into chunks of at most {self.n_max} can leave a response alone; got {self.n_max}"
            )
        if self.group_size < 2:
            return (
                f"the {judge.name!r} judge compares two responses at a time: /score works, but the single samples "
                "that RL frameworks send one per request (/get_reward, /reward) will each get an error; set "
                "--group-size to the samples per prompt of the RL run (e.g. --group-size 8) so that a prompt's "
                "samples are held and compared together"
            )
        return None
