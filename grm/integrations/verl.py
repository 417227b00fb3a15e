"""verl reward functions backed by a GRM, for verl's reward loop (``reward_model.use_reward_loop=True``,
``docs/advance/reward_loop.rst``), which calls an async ``compute_score`` once per sample.

Two ways, each a ``custom_reward_function`` (``examples/verl_grm_async.py`` names them for verl):

- :func:`compute_score` asks a running ``grm serve`` through grm's async client (:class:`AsyncRewardClient`, its
  ``/reward`` endpoint). Run the server with ``--group-size`` set to verl's ``rollout.n`` and a prompt's samples are
  judged together, listwise, though verl sends them one by one.
- :func:`router_compute_score` judges in verl's own process with verl's GenRM servers doing the generation: grm's
  OpenAI backend talks to the ``reward_router_address`` the reward loop passes (``/v1/chat/completions``), and grm
  does the prompts, parsing and voting; with ``GRM_GROUP_SIZE`` the samples of a prompt are held and judged together
  in this process (:class:`~grm.integrations.groups.GroupBuffer`).

The judge needs the question each solution answers: keep it in ``extra_info["question"]`` when you preprocess the
dataset. ``ground_truth``, when it is text, is the reference answer. Both return ``{"score": reward, ...}`` (verl
puts the other keys in ``reward_extra_info``): the voted mean on [0, 1], shaped as the server (or
``GRM_LENGTH_PENALTY``) says; a sample with no valid judgement gets ``GRM_FAILED_REWARD`` (default 0).

Environment: ``GRM_URL``, ``GRM_API_KEY``, ``GRM_TIMEOUT`` (the server); ``GRM_K`` (judgements per item, default 1),
``GRM_SEED`` (the router recipe's seed; default: drawn once per process and logged); for the router recipe
``GRM_MODEL`` (the served model's name; default the reward tokenizer's ``name_or_path``), ``GRM_TEMPLATE``,
``GRM_JUDGE``, ``GRM_MAX_NEW_TOKENS`` (default 1024), ``GRM_GROUP_SIZE`` (0: each sample alone), ``GRM_GROUP_WAIT_S``
(default 30), ``GRM_N_MAX`` (default 8), ``GRM_LENGTH_PENALTY`` (default 0).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from grm.integrations.client import AsyncRewardClient, loop_local
from grm.integrations.groups import GroupBuffer, Sample, SampleReward, sample_key
from grm.integrations.shaping import Shaping
from grm.model import GRM
from grm.scoring import ScoringOptions
from grm.seeding import random_seed
from grm.types import Item, normalize_query

logger = logging.getLogger(__name__)

_seed: list[int] = []


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

    async def judge(items: list[Item], options: ScoringOptions, keys: list[str]):
        return await rm.ascore_batch(items, options, keys=keys)

    buffer = GroupBuffer(
        judge,
        size=_env_int("GRM_GROUP_SIZE", 0),
        wait_s=_env_float("GRM_GROUP_WAIT_S", 30.0),
        n_max=_env_int("GRM_N_MAX", 8),
        score_range=rm.score_range,
        shaping=Shaping(_env_float("GRM_LENGTH_PENALTY", 0.0), _failed()),
    )
    return rm, buffer


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
    options = ScoringOptions(k=_env_int("GRM_K", 1), seed=_router_seed())
    if buffer.size > 1:
        result = await buffer.reward(sample, options)
    else:
        (reward,) = await rm.ascore_batch(
            [Item(sample.query, [sample.response], reference=sample.reference)], options, keys=[sample_key(sample)]
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
