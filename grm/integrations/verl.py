"""verl reward functions backed by a GRM, for verl's reward loop (``reward_model.use_reward_loop=True``,
``docs/advance/reward_loop.rst``), which calls an async ``compute_score`` once per sample.

Two ways, each a ``custom_reward_function`` (``examples/verl_grm_async.py`` names them for verl):

- :func:`compute_score` asks a running ``grm serve`` through grm's async client (:class:`AsyncRewardClient`, its
  ``/reward`` endpoint). Run the server with ``--group-size`` set to verl's ``rollout.n`` and a prompt's samples are
  judged together, listwise, though verl sends them one by one.
- :func:`router_compute_score` judges in verl's own process with verl's GenRM servers doing the generation: grm's
  OpenAI backend talks to the ``reward_router_address`` the reward loop passes (``/v1/chat/completions``), and grm
  does the prompts, parsing and voting; with ``GRM_GROUP_SIZE`` the samples of a prompt are held and judged together
  in this process (:class:`~grm.integrations.groups.GroupBuffer`). With ``GRM_META_RM`` a meta RM, loaded once in
  this process, rates the judgements and only the ``GRM_K_META`` it rates highest are voted (as ``grm serve
  --meta-rm`` does for :func:`compute_score`).

The judge needs the question each solution answers: keep it in ``extra_info["question"]`` when you preprocess the
dataset. ``ground_truth``, when it is text, is the reference answer. Both return ``{"score": reward, ...}`` (verl
puts the other keys in ``reward_extra_info``): the voted mean on [0, 1], shaped as the server (or
``GRM_LENGTH_PENALTY``) says; a sample with no valid judgement gets ``GRM_FAILED_REWARD`` (default 0).

Environment: ``GRM_URL``, ``GRM_API_KEY``, ``GRM_TIMEOUT`` (the server); ``GRM_K`` (judgements per item, default 1),
``GRM_SEED`` (the router recipe's seed; default: drawn once per process and logged); for the router recipe
``GRM_MODEL`` (the served model's name; default the reward tokenizer's ``name_or_path``), ``GRM_TEMPLATE``,
``GRM_JUDGE``, ``GRM_MAX_NEW_TOKENS`` (default 1024), ``GRM_GROUP_SIZE`` (0: each sample alone; a pairwise judge
needs it), ``GRM_GROUP_WAIT_S`` (default 30), ``GRM_N_MAX`` (default 8), ``GRM_LENGTH_PENALTY`` (default 0),
``GRM_META_RM`` (a meta RM's path or hub id; default none), ``GRM_K_META`` (judgements it keeps; default k // 2),
``GRM_META_RM_DEVICE`` (default: cuda where the reward worker has a GPU, else cpu).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from grm.integrations.client import AsyncRewardClient, loop_local
from grm.integrations.groups import GroupBuffer, Sample, SampleReward, min_responses, sample_key
from grm.integrations.shaping import Shaping
from grm.model import GRM
from grm.scoring import JudgementRater, ScoringOptions
from grm.seeding import random_seed
from grm.types import Item, normalize_query

logger = logging.getLogger(__name__)

_seed: list[int] = []
_meta_rms: dict[tuple[str, str | None], JudgementRater] = {}
_meta_lock = threading.Lock()


def question(extra_info: dict[str, Any] | None) -> str | list[dict[str, str]]:
    """The question a solution answers: ``extra_info["question"]`` (text or chat messages)."""
    given = (extra_info or {}).get("question")
    if not isinstance(given, str | list):
        raise KeyError("put each prompt's question in extra_info['question'] so the GRM can judge the solution")
    return given


def reference(ground_truth: Any) -> str | None:
    """``ground_truth`` as a reference answer: text, or nothing."""
    return ground_truth if isinstance(ground_truth, str) and ground_truth else None


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _client() -> AsyncRewardClient:
    timeout = _env_float("GRM_TIMEOUT", 600.0)
    return loop_local(("verl", os.environ.get("GRM_URL"), timeout), lambda: AsyncRewardClient(timeout=timeout))


def _failed() -> float:
    return _env_float("GRM_FAILED_REWARD", 0.0)


async def compute_score(
    data_source: str, solution_str: str, ground_truth: Any = None, extra_info: dict | None = None, **kwargs: Any
) -> dict[str, Any]:
    """verl's async per-sample reward, from ``grm serve`` (see the module docs)."""
    options = {"k": _env_int("GRM_K", 1)}
    if os.environ.get("GRM_SEED"):
        options["seed"] = int(os.environ["GRM_SEED"])
    answer = await _client().reward(question(extra_info), solution_str, reference(ground_truth), **options)
    return {
        "score": answer["reward"],
        "grm_n_valid": answer["n_valid"],
        "grm_n_drawn": answer["n_drawn"],
        "grm_group_size": answer["group_size"],
    }


def _router(address: str, tokenizer: Any) -> tuple[GRM, GroupBuffer]:
    """The GRM that talks to verl's router at ``address`` and its group buffer (one of each per event loop)."""
    model = os.environ.get("GRM_MODEL") or getattr(tokenizer, "name_or_path", None)
    if not model:
        raise ValueError("name the model verl's GenRM servers serve: set GRM_MODEL (no reward tokenizer was given)")
    return loop_local(("verl-router", address, model), lambda: _make_router(address, model))


def _make_router(address: str, model: str) -> tuple[GRM, GroupBuffer]:
    base = address if address.startswith(("http://", "https://")) else f"http://{address}"
    rm = GRM.from_openai(
        base.rstrip("/") + "/v1",
        model,
        api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY",
        judge=os.environ.get("GRM_JUDGE") or None,
        template=os.environ.get("GRM_TEMPLATE") or None,
        max_new_tokens=_env_int("GRM_MAX_NEW_TOKENS", 1024),
    )
    size, n_max = _env_int("GRM_GROUP_SIZE", 0), _env_int("GRM_N_MAX", 8)
    if min_responses(rm.judge) > 1 and (size < 2 or n_max < 3):
        raise ValueError(
            f"the {rm.judge.name!r} judge compares two responses at a time, so verl's samples cannot be judged one "
            "by one: set GRM_GROUP_SIZE to actor_rollout_ref.rollout.n (and GRM_N_MAX to 3 or more, so that no "
            f"chunk of a group holds one response alone); got GRM_GROUP_SIZE={size}, GRM_N_MAX={n_max}"
        )

    async def judge(items: list[Item], options: ScoringOptions, keys: list[str]):
        return await rm.ascore_batch(items, options, keys=keys, meta_rm=await _meta_rm())

    buffer = GroupBuffer(
        judge,
        size=size,
        wait_s=_env_float("GRM_GROUP_WAIT_S", 30.0),
        n_max=n_max,
        score_range=rm.score_range,
        shaping=Shaping(_env_float("GRM_LENGTH_PENALTY", 0.0), _failed()),
        judge_format=rm.judge,
        advice="keep GRM_GROUP_SIZE at actor_rollout_ref.rollout.n and GRM_GROUP_WAIT_S above the time a prompt's "
        "samples take to reach this reward worker",
    )
    return rm, buffer


async def _meta_rm() -> JudgementRater | None:
    """The meta RM ``GRM_META_RM`` names (on ``GRM_META_RM_DEVICE``), loaded once per process, in a worker thread
    so that the event loop keeps serving; None without one."""
    path = os.environ.get("GRM_META_RM")
    if not path:
        return None
    key = (path, os.environ.get("GRM_META_RM_DEVICE") or None)
    found = _meta_rms.get(key)
    return found if found is not None else await asyncio.to_thread(_load_meta_rm, key)


def _load_meta_rm(key: tuple[str, str | None]) -> JudgementRater:
    from grm.meta_rm import MetaRM

    with _meta_lock:
        if key not in _meta_rms:
            path, device = key
            meta = MetaRM.from_pretrained(path, device=device, progress=False)
            logger.info("grm router reward: meta RM %s on %s", path, meta.device)
            _meta_rms[key] = _OneAtATime(meta)
        return _meta_rms[key]


class _OneAtATime:
    """A meta RM shared by the event loops of a process, rating one batch at a time (each GRM runs it in a worker
    thread; its tokenizer is not made for concurrent calls)."""

    def __init__(self, rater: JudgementRater) -> None:
        self.rater, self.lock = rater, threading.Lock()

    def score_batch(self, entries):
        with self.lock:
            return self.rater.score_batch(entries)


def _router_options() -> ScoringOptions:
    """The router recipe's scoring options: ``GRM_K``, the seed, and ``GRM_K_META`` (a meta RM's; None: k // 2)."""
    k_meta = os.environ.get("GRM_K_META")
    if k_meta and not os.environ.get("GRM_META_RM"):
        raise ValueError("GRM_K_META was set without GRM_META_RM (the meta RM that rates the judgements)")
    return ScoringOptions(k=_env_int("GRM_K", 1), seed=_router_seed(), k_meta=int(k_meta) if k_meta else None)


def _router_seed() -> int:
    if not _seed:
        _seed.append(int(os.environ["GRM_SEED"]) if os.environ.get("GRM_SEED") else random_seed())
        logger.info("grm router reward: seed %d (set GRM_SEED to repeat)", _seed[0])
    return _seed[0]


async def router_compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: dict | None = None,
    reward_router_address: str | None = None,
    reward_model_tokenizer: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """verl's async per-sample reward judged here, with verl's GenRM servers (behind ``reward_router_address``)
    generating (see the module docs)."""
    if not reward_router_address:
        raise ValueError("no reward_router_address: enable verl's reward model (reward_model.enable=True)")
    rm, buffer = _router(reward_router_address, reward_model_tokenizer)
    sample = Sample(normalize_query(question(extra_info)), solution_str, reference(ground_truth))
    options = _router_options()
    if buffer.size > 1:
        result = await buffer.reward(sample, options)
    else:
        (reward,) = await rm.ascore_batch(
            [Item(sample.query, [sample.response], reference=sample.reference)],
            options,
            keys=[sample_key(sample)],
            meta_rm=await _meta_rm(),
        )
        score = None if (n := reward.normalized(rm.score_range)) is None else n[0]
        (value,) = buffer.shaping.apply([score], [len(solution_str)])
        result = SampleReward(reward, 0, value, score, 1)
    return {
        "score": _failed() if result.value is None else result.value,
        "grm_n_valid": result.reward.n_valid,
        "grm_n_drawn": result.reward.n_drawn,
        "grm_group_size": result.group_size,
    }
