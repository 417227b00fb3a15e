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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from grm.model import GRM
from grm.scoring import JudgementRater, ScoringOptions, check_meta_rm, chunks, resolve_options
from grm.seeding import seed_for
from grm.types import Item, Reward, completion_text

__all__ = ["AsyncGRMReward", "GRMReward", "completion_text"]

logger = logging.getLogger(__name__)
MODES = ("group", "pointwise")


class GRMReward:
    """Reward function for TRL trainers backed by a :class:`grm.GRM` (see the module docs for the scale).

    ``options`` (or its fields as keywords, e.g. ``k=4``) set how each call scores; ``meta_rm`` rates the
    judgements for meta-guided voting (``k_meta``); ``n_max`` caps the completions judged in one prompt.
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
        **overrides: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if n_max < 1:
            raise ValueError(f"n_max must be >= 1, got {n_max}")
        if reference_column is not None and mode != "pointwise":
            raise ValueError("reference_column is for mode='pointwise'; group mode compares completions instead")
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
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(json.dumps(p, sort_keys=True), []).append(i)
        out = []
        for indices in groups.values():
            for part in chunks(len(indices), self.n_max):
                chunk = [indices[i] for i in part]
                out.append((Item(prompts[chunk[0]], [texts[i] for i in chunk]), chunk))
        return out

    def rewards(self, plan: list[tuple[Item, list[int]]], results: Sequence[Reward], n: int) -> list[float | None]:
        """Map voted results back onto the completions, normalised to [0, 1]."""
        out: list[float | None] = [None] * n
        for (_, indices), r in zip(plan, results):
            normalized = r.normalized(self.rm.score_range)
            if normalized is not None:
                for i, x in zip(indices, normalized):
                    out[i] = x
        return out

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        log_metric: Callable[[str, float], None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        plan = self.items(prompts, completions, **kwargs)
        results = self.rm.score_batch([item for item, _ in plan], self._next_options(), meta_rm=self.meta_rm)
        return self._finish(plan, results, len(completions), log_metric)

    def _next_options(self) -> ScoringOptions:
        """This call's options: a seed of its own (see the module docs)."""
        self.calls += 1
        return self.options.replace(seed=seed_for(self.options.seed, self.calls - 1))

    def _finish(self, plan, results: Sequence[Reward], n: int, log_metric) -> list[float | None]:
        rewards = self.rewards(plan, results, n)
        self._log(results, rewards, log_metric)
        return rewards

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
        **kwargs: Any,
    ) -> list[float | None]:
        plan = self.items(prompts, completions, **kwargs)
        results = await self.rm.ascore_batch([item for item, _ in plan], self._next_options(), meta_rm=self.meta_rm)
        return self._finish(plan, results, len(completions), log_metric)
