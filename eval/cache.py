"""The evaluation cache: one JSONL row per judged item (a GRM's ``Reward``, or a scalar reward function's scores),
keyed by item id and appended as items are scored, so that a run resumes where it stopped; and the check that a
cached item was judged as this run judges it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grm.eval.base import EvalItem
from grm.eval.metrics import Judged
from grm.eval.plan import EvalPlan
from grm.eval.scoring import item_judged, tokens
from grm.jsonl import JsonlWriter, load_finished
from grm.types import Judgement, Reward
from grm.voting import Vote

logger = logging.getLogger(__name__)

FRESH = "pass another cache (or --output) to start afresh"
"""How to start afresh, said by every refusal of a cache."""


@dataclass
class Cached:
    """A cache row cut down, as it is read, to what the metrics need (judgement texts are dropped). ``k`` is the
    k asked for (None: a scalar reward function's row); a GRM's row also keeps its own vote, the judgements drawn
    and their tokens."""

    k: int | None
    judgements: list[Judgement]
    meta: list[float] | None = None
    adaptive: bool = False
    vote: Vote | None = None
    n_drawn: int | None = None
    n_tokens: int | None = None


def cache_row(item: EvalItem, outcome: Reward | list[float], k: int, adaptive: bool) -> dict[str, Any]:
    """An item's cache row: ``k`` is the k asked for (a fixed-k row holds that many judgements, an ``adaptive``
    row up to that many)."""
    row: dict[str, Any] = {"id": item.id, "subset": item.subset}
    if isinstance(outcome, Reward):
        row.update(k=k, reward=outcome.to_dict())
        if adaptive:
            row["adaptive"] = True
    else:
        row["scores"] = outcome
    return row


def read_cache(path: str | Path) -> dict[str, Cached]:
    """The items a cache holds, by id (a missing file holds none)."""
    cached = load_finished(path, "id", keep=lambda row: _compact(row, path))
    if cached:
        logger.info("%s: %d items already judged", path, len(cached))
    return cached


def _compact(row: dict[str, Any], path: str | Path) -> Cached:
    if "reward" in row:
        reward = row["reward"]
        judgements = [Judgement(text="", scores=j["scores"], error=j["error"]) for j in reward["judgements"]]
        return Cached(
            k=row["k"],
            judgements=judgements,
            meta=reward.get("meta_scores"),
            adaptive=bool(row.get("adaptive")),
            vote=Vote(reward["rewards"], reward["mean"], reward["best"], reward["kept"]),
            n_drawn=len(judgements) + reward.get("n_retries", 0),
            n_tokens=tokens(j.get("n_tokens") for j in reward["judgements"]),
        )
    if "scores" in row:
        return Cached(k=None, judgements=[Judgement(text="", scores=row["scores"])])
    raise ValueError(f"{path}: the row for id {row['id']!r} has neither 'reward' nor 'scores'; not a grm eval cache")


class EvalCache:
    """A run's cache: the items it held when opened (:meth:`take` them as the data streams past), and a writer
    appending each item scored now. Without a path it holds nothing and writes nothing."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)
        self.entries: dict[str, Cached] = {} if self.path is None else read_cache(self.path)
        self._writer: JsonlWriter | None = None

    def __enter__(self) -> EvalCache:
        if self.path is not None:
            self._writer = JsonlWriter(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def take(self, item: EvalItem, plan: EvalPlan) -> Judged | None:
        """``item`` as the cache judged it (checked against ``plan``, see :func:`match`), None when not cached."""
        entry = self.entries.pop(item.id, None)
        return None if entry is None else match(entry, item, plan, where=f"{self.path}: item {item.id!r}")

    def write(self, row: dict[str, Any]) -> None:
        if self._writer is not None:
            self._writer.write(row)

    def warn_unused(self) -> None:
        """Log the cached items no data item took (they are kept in the file)."""
        if self.entries:
            logger.warning("%s: %d cached items are not in this data and were ignored", self.path, len(self.entries))


def match(entry: Cached, item: EvalItem, plan: EvalPlan, *, where: str) -> Judged:
    """``item`` judged as the cache holds it; ValueError (naming ``where``) when the row was not made as ``plan``
    makes them: by another kind of scorer, with another k, fixed-k against adaptive, with a meta RM or without
    (an adaptive row's vote is the meta RM's when it had one), or for another number of responses."""
    if (entry.k is not None) != plan.grm:
        made = "a GRM" if entry.k is not None else "a scalar reward function"
        raise ValueError(f"{where} was judged by {made}, not by this scorer; {FRESH}")
    if plan.grm:
        _check_grm_row(entry, plan, where)
    n = len(item.responses)
    if any(j.scores is not None and len(j.scores) != n for j in entry.judgements):
        raise ValueError(f"{where} has cached scores for other than its {n} responses; {FRESH}")
    judged = item_judged(item, entry.judgements, entry.meta)
    if plan.grm:
        judged.vote, judged.n_drawn, judged.n_tokens = entry.vote, entry.n_drawn, entry.n_tokens
    return judged


def _check_grm_row(entry: Cached, plan: EvalPlan, where: str) -> None:
    k, adaptive = plan.k, plan.adaptive
    if entry.adaptive != adaptive:
        made, this = ("adaptively", "a fixed-k run") if entry.adaptive else (f"with all k={entry.k}", "adaptive")
        raise ValueError(f"{where} was judged {made}, and this run is {this}; {FRESH}")
    if not adaptive and entry.k != k:
        raise ValueError(f"{where} has k={entry.k} cached judgements, expected k={k}; {FRESH}")
    if adaptive and (entry.k != k or not 1 <= len(entry.judgements) <= k):
        got = len(entry.judgements)
        raise ValueError(f"{where} was judged adaptively with k={entry.k} ({got} judgements), not k={k}; {FRESH}")
    if plan.rated and entry.meta is None:
        raise ValueError(f"{where} was judged without a meta RM; {FRESH}")
    if adaptive and not plan.rated and entry.meta is not None:
        raise ValueError(f"{where} was judged with a meta RM, which made its vote; this run has none; {FRESH}")
