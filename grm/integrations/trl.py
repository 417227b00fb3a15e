"""A GRM as a TRL reward function for training a policy (GRPO, RLOO, ...).

TRL calls a reward function with ``prompts``, ``completions`` and the dataset's other columns as keyword
arguments and expects one float (or None) per completion. :class:`GRMReward` judges them with a GRM:

- ``mode="group"`` (default) judges the completions of one prompt together (listwise, in chunks of at most
  ``n_max``), so a policy's group is compared on one scale in the same judgement;
- ``mode="pointwise"`` judges each completion alone, optionally against a reference answer from a dataset column.

The reward is the voted mean score mapped linearly onto [0, 1] for the GRM's score range
(:meth:`grm.Reward.normalized`). Scoring settings (``k``, ``seed``, ``temperature``...) are a
:class:`grm.ScoringOptions`, given whole or by keyword; ``seed`` seeds the first call and each later call draws
afresh from ``seed`` plus the number of calls before it. Adaptive compute passes through:
``GRMReward(rm, k=8, adaptive=True, risk=0.01)`` spends fewer judgements on a group whose completions are clearly
apart than on a close one, and ``budget=0.5`` caps each call at half of ``k`` per judged group (a fraction suits
calls of varying size better than a count). A completion whose judgements all fail to parse gets ``None``, which
TRL ignores; the count is logged as ``grm/unscored`` together with ``grm/invalid_judgements`` (fraction) and
``grm/judgements_per_item`` (judgements drawn per judged group or completion) when TRL passes ``log_metric``.

When TRL passes ``log_extra`` (GRPO does), each completion's critique goes beside it in the completions table, in the
``grm_critique`` column: the analysis of the judgement that judged it best rated (by the meta RM when there is one,
else the one whose scores are closest to the vote), cut to ``critique_chars`` characters. Reward shaping is off by
default: ``length_penalty`` and ``unscored`` (``None``, a number or ``"min"``) apply within each prompt's group
(:class:`grm.integrations.shaping.Shaping`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from grm.integrations.shaping import Shaping
from grm.model import GRM
from grm.scoring import JudgementRater, ScoringOptions, check_meta_rm, chunks, resolve_options
from grm.seeding import seed_for
from grm.types import Item, Judgement, Reward, completion_text

__all__ = ["AsyncGRMReward", "GRMReward", "completion_text"]

logger = logging.getLogger(__name__)
MODES = ("group", "pointwise")


class GRMReward:
    """Reward function for TRL trainers backed by a :class:`grm.GRM` (see the module docs for the scale).

    ``options`` (or its fields as keywords, e.g. ``k=4``) set how each call scores; ``meta_rm`` rates the
    judgements for meta-guided voting (``k_meta``); ``n_max`` caps the completions judged in one prompt;
    ``critique_chars`` bounds the logged critiques; ``length_penalty`` and ``unscored`` shape the rewards.
    """

    def __init__(
        self,
        rm: GRM,
        options: ScoringOptions | None = None,
        *,
        mode: str = "group",
        n_max: int = 8,
        meta_rm: JudgementRater | None = None,
        reference_column: str | None = None,
        critique_chars: int = 300,
        length_penalty: float = 0.0,
        unscored: float | str | None = None,
        **overrides: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if n_max < 1:
            raise ValueError(f"n_max must be >= 1, got {n_max}")
        if reference_column is not None and mode != "pointwise":
            raise ValueError("reference_column is for mode='pointwise'; group mode compares completions instead")
        if critique_chars < 0:
            raise ValueError(f"critique_chars must be >= 0, got {critique_chars}")
        self.shaping = Shaping(length_penalty, unscored)
        self.critique_chars = critique_chars
        self.rm, self.mode, self.n_max, self.reference_column = rm, mode, n_max, reference_column
        self.options, self.meta_rm = resolve_options(options, overrides), meta_rm
        check_meta_rm(self.options, meta_rm is not None)
        self.__name__ = f"grm_{mode}"  # the name TRL logs the reward under
        self.calls = 0

    def items(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[tuple[Item, list[int]]]:
        """The GRM items to score and, for each, the indices of the completions it holds."""
        texts = [completion_text(c) for c in completions]
        if len(texts) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(texts)} completions")
        if self.mode == "pointwise":
            refs = kwargs.get(self.reference_column) if self.reference_column else None
            if self.reference_column and refs is None:
                raise KeyError(
                    f"reference column {self.reference_column!r} is not in the dataset; got {sorted(kwargs)}"
                )
            return [
                (Item(p, [t], reference=refs[i] if refs else None), [i]) for i, (p, t) in enumerate(zip(prompts, texts))
            ]
        out = []
        for indices in _groups(prompts).values():
            for part in chunks(len(indices), self.n_max):
                chunk = [indices[i] for i in part]
                out.append((Item(prompts[chunk[0]], [texts[i] for i in chunk]), chunk))
        return out

    def rewards(self, plan: list[tuple[Item, list[int]]], results: Sequence[Reward], n: int) -> list[float | None]:
        """Map voted results back onto the completions, normalised to [0, 1] (unshaped)."""
        out: list[float | None] = [None] * n
        for (_, indices), r in zip(plan, results):
            normalized = r.normalized(self.rm.score_range)
            if normalized is not None:
                for i, x in zip(indices, normalized):
                    out[i] = x
        return out

    def shaped(self, rewards: list[float | None], prompts: Sequence[Any], texts: Sequence[str]) -> list[float | None]:
        """``rewards`` shaped within each prompt's group (unchanged under the default shaping)."""
        if self.shaping == Shaping():
            return rewards
        out = list(rewards)
        for indices in _groups(prompts).values():
            values = self.shaping.apply([rewards[i] for i in indices], [len(texts[i]) for i in indices])
            for i, v in zip(indices, values):
                out[i] = v
        return out

    def critiques(self, plan: list[tuple[Item, list[int]]], results: Sequence[Reward], n: int) -> list[str]:
        """Each completion's critique: the best-rated judgement of the item that held it, shortened."""
        out = [""] * n
        for (_, indices), r in zip(plan, results):
            text = _shorten(critique(r), self.critique_chars)
            for i in indices:
                out[i] = text
        return out

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        plan = self.items(prompts, completions, **kwargs)
        results = self.rm.score_batch([item for item, _ in plan], self._next_options(), meta_rm=self.meta_rm)
        return self._finish(plan, results, prompts, completions, log_metric, log_extra)

    def _next_options(self) -> ScoringOptions:
        """This call's options: a seed of its own (see the module docs)."""
        self.calls += 1
        return self.options.replace(seed=seed_for(self.options.seed, self.calls - 1))

    def _finish(self, plan, results: Sequence[Reward], prompts, completions, log_metric, log_extra) -> list:
        n = len(completions)
        rewards = self.rewards(plan, results, n)
        self._log(results, rewards, log_metric)
        if log_extra is not None:
            log_extra("grm_critique", self.critiques(plan, results, n))
        return self.shaped(rewards, prompts, [completion_text(c) for c in completions])

    @staticmethod
    def _log(results: Sequence[Reward], rewards: list[float | None], log_metric) -> None:
        judgements = sum(len(r.judgements) for r in results)
        invalid = sum(r.n_invalid for r in results)
        unscored = sum(r is None for r in rewards)
        if unscored:
            logger.warning(
                "%d of %d completions got no reward (all their judgements failed to parse)", unscored, len(rewards)
            )
        if log_metric is not None:
            log_metric("grm/unscored", float(unscored))
            log_metric("grm/invalid_judgements", invalid / judgements if judgements else 0.0)
            log_metric("grm/judgements_per_item", sum(r.n_drawn for r in results) / len(results) if results else 0.0)


class AsyncGRMReward(GRMReward):
    """:class:`GRMReward` with an ``async`` ``__call__`` (through ``GRM.ascore_batch``): TRL runs async reward
    functions concurrently with the others, and an HTTP-backed GRM then never blocks a thread."""

    async def __call__(  # type: ignore[override]
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        plan = self.items(prompts, completions, **kwargs)
        results = await self.rm.ascore_batch([item for item, _ in plan], self._next_options(), meta_rm=self.meta_rm)
        return self._finish(plan, results, prompts, completions, log_metric, log_extra)


def _groups(prompts: Sequence[Any]) -> dict[str, list[int]]:
    """The indices of each distinct prompt's completions."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(json.dumps(p, sort_keys=True), []).append(i)
    return groups


def critique(reward: Reward) -> str:
    """The analysis of a Reward's best-rated judgement: among the voted ones, the meta RM's highest rated, else the
    one whose scores are closest to the vote's mean (its text when it has no analysis); "" when none was valid."""
    voted = [i for i in (reward.kept or range(len(reward.judgements))) if reward.judgements[i].valid]
    if not voted:
        return ""
    if reward.meta_scores is not None:
        best = max(voted, key=lambda i: reward.meta_scores[i])  # type: ignore[index]
    else:
        best = min(voted, key=lambda i: _distance(reward.judgements[i], reward.mean))
    judgement = reward.judgements[best]
    return (judgement.analysis or judgement.text).strip()


def _distance(judgement: Judgement, mean: Sequence[float | None] | None) -> float:
    pairs = zip(judgement.scores or [], mean or [])
    return sum(abs(s - m) for s, m in pairs if s is not None and m is not None)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"
