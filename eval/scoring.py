"""Calling a scorer, a GRM or a scalar reward function, the same way for evaluation and diagnostics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from grm.eval.base import EvalItem
from grm.eval.metrics import Judged
from grm.scoring import JudgementRater, ScoringOptions
from grm.types import Judgement, Message, Reward, normalize_query
from grm.voting import Vote

ScalarRM = Callable[[list[Message], list[str]], Sequence[float]]
"""A scalar reward model: ``(messages, responses) -> one score per response``, higher is better."""


def is_grm(scorer: Any) -> bool:
    """Whether ``scorer`` is a GRM (has ``score_batch``), as opposed to a scalar reward function; anything else
    is a TypeError."""
    if callable(getattr(scorer, "score_batch", None)):
        return True
    if not callable(scorer):
        raise TypeError(f"scorer must be a GRM or a callable (messages, responses) -> scores, got {type(scorer)}")
    return False


def judge(
    scorer: Any,
    items: Sequence[EvalItem],
    options: ScoringOptions,
    *,
    meta_rm: JudgementRater | None = None,
    keys: Sequence[str] | None = None,
) -> list[Reward | list[float]]:
    """Score ``items`` with a GRM (one :class:`~grm.types.Reward` each, scored with ``options`` and ``meta_rm``
    in one ``score_batch`` call) or a scalar reward function (one checked list of floats each). A GRM seeds each
    item by ``options.seed`` and its key in ``keys`` (default: its id), so its reward does not depend on the chunk
    it is in."""
    if is_grm(scorer):
        keys = [it.id for it in items] if keys is None else keys
        return scorer.score_batch(list(items), options, meta_rm=meta_rm, keys=keys)
    return [_scalar_scores(scorer, it) for it in items]


def mean_scores(outcome: Reward | list[float]) -> list[float] | None:
    """Per-response scores of a :func:`judge` outcome: a Reward's voted mean (None if no judgement could be
    read), or a scalar reward function's scores."""
    return outcome.mean if isinstance(outcome, Reward) else outcome


def scorer_settings(scorer: Any, meta_rm: Any = None) -> dict[str, Any]:
    """What a scorer says of itself that changes what it scores, recorded with an evaluation's cache when the
    caller names no model settings: a GRM's engine and model (as its backend names them), judge format, template,
    score range, ``max_new_tokens`` and ``max_retries``, and its meta RM; a scalar reward function's name."""
    if not is_grm(scorer):
        name = getattr(scorer, "__qualname__", type(scorer).__qualname__)
        return {"scorer": "scalar", "function": f"{getattr(scorer, '__module__', None)}.{name}"}
    template = getattr(scorer, "template", None)
    return {
        "scorer": "grm",
        "backend": type(scorer.backend).__name__,
        "model": _model_name(scorer.backend),
        "judge": getattr(getattr(scorer, "judge", None), "name", None),
        "template": getattr(template, "name", None),
        "score_range": list(getattr(scorer, "score_range", ())) or None,
        "max_new_tokens": getattr(scorer, "max_new_tokens", None),
        "max_retries": getattr(scorer, "max_retries", None),
        "meta_rm": None if meta_rm is None else _model_name(meta_rm),
    }


def scoring_settings(model: Mapping[str, Any], options: ScoringOptions) -> dict[str, Any]:
    """A model's settings with every scoring option (``max_new_tokens`` and ``max_retries``: the option, else the
    model's): what changes a scorer's judgements."""
    settings = {**model, **asdict(options)}
    for key in ("max_new_tokens", "max_retries"):
        settings[key] = getattr(options, key) if getattr(options, key) is not None else model.get(key)
    return settings


def _model_name(engine: Any) -> str:
    """The model an engine or a meta RM runs, as it names it (a local path made absolute), else its class."""
    for name in (getattr(engine, "name", None), getattr(engine, "model", None)):
        name = getattr(name, "name_or_path", name)
        if isinstance(name, str | Path) and str(name):
            return str(Path(name).resolve()) if Path(name).exists() else str(name)
    return type(engine).__qualname__


def judged_of(item: EvalItem, outcome: Reward | list[float]) -> Judged:
    """What the metrics keep of a :func:`judge` outcome: a Reward's judgements (texts dropped), meta scores, own
    vote, judgements drawn and tokens; a scalar reward function's scores as one judgement."""
    if isinstance(outcome, Reward):
        judged = item_judged(item, light(outcome.judgements), outcome.meta_scores)
        judged.vote = Vote(outcome.rewards, outcome.mean, outcome.best, outcome.kept)
        judged.n_drawn, judged.n_tokens = outcome.n_drawn, tokens(j.n_tokens for j in outcome.judgements)
        return judged
    return item_judged(item, [Judgement(text="", scores=outcome)])  # type: ignore[arg-type]


def item_judged(item: EvalItem, judgements: list[Judgement], meta: list[float] | None = None) -> Judged:
    """A :class:`~grm.eval.metrics.Judged` of ``item`` (with its responses' lengths) and its judgements."""
    lengths = [len(r) for r in item.responses]
    return Judged(item.subset, list(item.truth), judgements, meta, id=item.id, lengths=lengths)


def light(judgements: Iterable[Judgement]) -> list[Judgement]:
    """Judgements without their text: what voting needs (scores, error, the order that tells which responses a
    judgement saw), small enough to keep one per sample in memory."""
    return [Judgement(text="", scores=j.scores, error=j.error, order=j.order) for j in judgements]


def tokens(counts: Iterable[int | None]) -> int | None:
    """The sum of the recorded token counts (None ones skipped); None when none was recorded."""
    recorded = [n for n in counts if n is not None]
    return sum(recorded) if recorded else None


def _scalar_scores(scorer: ScalarRM, item: EvalItem) -> list[float]:
    out = scorer(normalize_query(item.query), list(item.responses))
    try:
        scores = [float(s) for s in out]
    except (TypeError, ValueError) as e:
        raise TypeError(f"item {item.id}: the reward function must return numbers, got {out!r:.80}") from e
    if len(scores) != len(item.responses):
        raise ValueError(
            f"item {item.id}: the reward function returned {len(scores)} scores for {len(item.responses)} responses"
        )
    return scores
