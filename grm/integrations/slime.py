"""A slime custom reward function backed by ``grm serve``: ``--custom-rm-path grm.integrations.slime.grm_rm``.

slime calls it with one sample, or with ``--group-rm`` with a prompt's whole group (``slime/rollout/rm_hub``,
``batched_async_rm``); it posts them to ``--rm-url`` (grm's ``/reward``, e.g. ``http://127.0.0.1:8000/reward``):
a group in one request, judged together at once. Without ``--reward-key`` it returns the reward (a float per
sample); with ``--reward-key reward`` the server's whole answer (``reward``, ``score``, ``n_valid``, ``n_drawn``,
``group_size``), from which slime takes the reward.

Plain ``--rm-type remote_rm --rm-url http://HOST:PORT/reward --reward-key reward`` needs no custom function: slime
then posts each sample alone (with ``--group-rm`` too, all of a group at once), and ``grm serve --group-size N``
puts the group back together.
"""

from __future__ import annotations

import numbers
from typing import Any

import httpx

from grm.integrations.client import AsyncRewardClient, loop_local


def _client(rm_url: str) -> tuple[AsyncRewardClient, str]:
    url = httpx.URL(rm_url)
    client = loop_local(("slime", rm_url), lambda: AsyncRewardClient(f"{url.scheme}://{url.netloc.decode()}"))
    return client, url.path if url.path not in ("", "/") else "/reward"


def _sample(sample: Any) -> dict[str, Any]:
    label = sample.label
    if isinstance(label, numbers.Number) and not isinstance(label, bool):
        label = str(label)
    return {"prompt": sample.prompt, "response": sample.response, "label": label}


async def grm_rm(args: Any, sample: Any, **kwargs: Any) -> Any:
    """slime's custom reward function: a sample's reward, or a list of them for a group (see the module docs)."""
    client, path = _client(args.rm_url)
    if isinstance(sample, list):
        answer = await client.post(path, {"samples": [_sample(s) for s in sample]})
        return [r if args.reward_key else r["reward"] for r in answer["results"]]
    answer = await client.post(path, _sample(sample))
    return answer if args.reward_key else answer["reward"]
