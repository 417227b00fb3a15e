"""The evaluation cache: one JSONL row per judged item (a GRM's ``Reward``, or a scalar reward function's scores),
keyed by item id and appended as items are scored, so that a run resumes where it stopped, with the settings its
rows were made with recorded beside it, so that a resumed run cannot mix rows of other settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grm.eval.base import EvalItem
from grm.eval.metrics import Judged
from grm.eval.scoring import item_judged, tokens
from grm.jsonl import JsonlWriter, load_finished
from grm.settings import resolve_settings, write_settings
from grm.types import Judgement, Reward
from grm.voting import Vote

logger = logging.getLogger(__name__)

FRESH = "delete the cache to start afresh, or pass another one (grm eval: another --output)"
"""How to start afresh, said by a refusal of a cache's row."""


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
        judgements = [
            Judgement(text="", scores=j["scores"], error=j["error"], order=j.get("order")) for j in reward["judgements"]
        ]
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
    """A run's cache: the items it held when opened (:meth:`take` them as the data streams past), a writer
    appending each item scored now, and the settings its rows were made with (:mod:`grm.settings`, recorded in
    ``<cache>.settings.json``).

    Opening checks ``settings`` against the record: a cache holding rows made with other settings (or with no
    record) is refused, naming each setting that differs and how to start afresh; a seed of None is the recorded
    one (drawn for a new cache). :attr:`settings` holds what the run goes on with. Without a path it holds
    nothing and writes nothing, and only draws the seed."""

    def __init__(self, path: str | Path | None, settings: Mapping[str, Any]) -> None:
        self.path = None if path is None else Path(path)
        self.entries: dict[str, Cached] = {} if self.path is None else read_cache(self.path)
        if self.path is None:
            self.settings = resolve_settings("-", settings, started=False)
        else:
            restart = f"delete {self.path} to start afresh, or pass another cache (grm eval: another --output)"
            self.settings = resolve_settings(self.path, settings, started=bool(self.entries), restart=restart)
        self._writer: JsonlWriter | None = None

    def __enter__(self) -> EvalCache:
        if self.path is not None:
            self._writer = JsonlWriter(self.path)
            write_settings(self.path, self.settings)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def take(self, item: EvalItem) -> Judged | None:
        """``item`` as the cache judged it (see :func:`match`), None when not cached."""
        entry = self.entries.pop(item.id, None)
        return None if entry is None else match(entry, item, where=f"{self.path}: item {item.id!r}")

    def write(self, row: dict[str, Any]) -> None:
        if self._writer is not None:
            self._writer.write(row)

    def warn_unused(self) -> None:
        """Log the cached items no data item took (they are kept in the file)."""
        if self.entries:
            logger.warning("%s: %d cached items are not in this data and were ignored", self.path, len(self.entries))


def match(entry: Cached, item: EvalItem, *, where: str) -> Judged:
    """``item`` judged as the cache holds it; ValueError (naming ``where``) when the cached scores are for another
    number of responses (the data changed under the cache). That the row was made with this run's settings is
    checked once, when the cache is opened."""
    n = len(item.responses)
    if any(j.scores is not None and len(j.scores) != n for j in entry.judgements):
        raise ValueError(f"{where} has cached scores for other than its {n} responses; {FRESH}")
    judged = item_judged(item, entry.judgements, entry.meta)
    if entry.k is not None:
        judged.vote, judged.n_drawn, judged.n_tokens = entry.vote, entry.n_drawn, entry.n_tokens
    return judged
