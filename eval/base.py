"""What every benchmark shares: the labelled item, the row readers and checks, and the Benchmark interface."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grm.rule import best_index
from grm.sources import Source
from grm.types import Example, brief, normalize_query, normalize_responses
from grm.voting import Vote

logger = logging.getLogger(__name__)


@dataclass
class EvalItem(Example):
    """A benchmark item: an :class:`grm.Example` (``id`` always set) plus the ``subset`` it is scored in.

    ``truth`` follows Example: with several responses its unique maximum marks the best one (pairwise, best-of-N),
    except for best-of-K correctness items (PPE correctness), where it holds 1/0 per response and several may be
    correct; with one response it is the response's rating (1: no error, 0: error).
    """

    subset: str = "all"


@dataclass
class Table:
    """Per-item numbers a benchmark's summary is computed from, as arrays (so bootstrap resamples are cheap).

    ``values`` holds one number per item (shape ``(items,)``), or ``Benchmark.width`` numbers (``(items, width)``,
    the first being the item's main value): 0..1 correctness for accuracy benchmarks, or the predicted score (NaN
    when no judgement could be read) for ROC-AUC ones, whose ground truth is in ``labels``. ``ids`` are the item
    ids; ``units`` number the scoring units (items scored together, e.g. a pair judged in both orders, see
    :meth:`Benchmark.unit`): a bootstrap resample draws whole units and numbers each drawn copy afresh.
    """

    subsets: list[str]
    codes: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None = None
    units: np.ndarray | None = None

    def take(self, index: np.ndarray, units: np.ndarray | None = None) -> Table:
        """The items at ``index``; ``units`` (one per taken item) replaces their unit numbers when given."""
        return Table(
            self.subsets,
            self.codes[index],
            self.values[index],
            self.labels[index],
            None if self.ids is None else self.ids[index],
            units if units is not None else None if self.units is None else self.units[index],
        )

    @property
    def main(self) -> np.ndarray:
        """Each item's main value (the first column when there are several)."""
        return self.values if self.values.ndim == 1 else self.values[:, 0]

    def groups(self) -> list[np.ndarray]:
        """Item indices of each subset, in ``subsets`` order."""
        return [np.flatnonzero(self.codes == c) for c in range(len(self.subsets))]

    def subset_means(self, values: np.ndarray | None = None) -> dict[str, float]:
        """Mean of ``values`` (default: :attr:`main`) per subset; subsets without items are left out."""
        values = self.main if values is None else values
        sums = np.bincount(self.codes, weights=values, minlength=len(self.subsets))
        counts = np.bincount(self.codes, minlength=len(self.subsets))
        return {s: float(sums[c] / counts[c]) for c, s in enumerate(self.subsets) if counts[c]}


@dataclass(frozen=True)
class Row:
    """One row of a benchmark's data: ``origin`` (its file, or ``name:split`` of a hub dataset) and ``index`` (its
    0-based place there) make ids of rows that have none; ``where`` names it for a person (``data/rb.jsonl line
    3``); ``row`` is None when it could not be read, and ``error`` says why."""

    origin: str
    index: int
    where: str
    row: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read, or is not a valid item of its benchmark: where it is and why."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


HEADLINE = "headline"
"""The key of every benchmark's main number in its scores (see :meth:`Benchmark.scores`)."""
HEADLINE_KEYS = ("overall", "accuracy")
"""The scores a headline is taken from: the first of these a summary has."""


def headline_key(summary: Mapping[str, float]) -> str:
    """Which of a summary's scores its headline is."""
    return next((key for key in HEADLINE_KEYS if key in summary), HEADLINE_KEYS[-1])


class Benchmark(ABC):
    """One benchmark: a loader of :class:`EvalItem` and its official scoring rule.

    :meth:`read` streams the items of a source with a :class:`BadRow` in place of each row that is not a valid
    item (naming its file and row), so that one bad row does not hide the others; :meth:`items` raises at the
    first. ``skips_bad_rows`` says whether the benchmark's scores stay what they claim to be without such rows
    (see :func:`grm.eval.evaluate`).

    ``value`` turns one item's vote into a number (or ``width`` numbers) and ``summarize`` turns a :class:`Table`
    of them into named scores, fractions in 0..1: ``overall`` (the benchmark's main number), ``groups/<name>``
    (sections) and ``subsets/<name>``; :meth:`scores` adds ``headline``. Items whose scores only make sense
    together share a :meth:`unit`.
    """

    name: str
    metric: str = "accuracy"
    hub_id: str | None = None
    """The hub dataset ``grm eval`` reads when given no ``--data``."""
    hub_split: str | None = None
    """The split read from a hub dataset when none is named."""
    width: int = 1
    """How many numbers :meth:`value` returns per item (the first is the item's main value)."""
    fixed_order: bool = False
    """The responses must be shown in the order given (a GRM scores them with shuffling off)."""
    skips_bad_rows: bool = False
    """Whether an evaluation skips a bad row (its scores are then those of the other items), rather than stopping:
    only where no published number depends on the full set of items."""

    @abstractmethod
    def read(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[Entry]:
        """Stream the benchmark's items from a local file or folder, or from a hub dataset name, with a
        :class:`BadRow` for each row that is not a valid item."""

    def items(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[EvalItem]:
        """The items of :meth:`read`; a bad row is a ValueError naming its file and row."""
        for entry in self.read(source, split=split, name=name):
            if isinstance(entry, BadRow):
                raise ValueError(str(entry))
            yield entry

    def value(self, vote: Vote, truth: Sequence[float]) -> float | Sequence[float]:
        """1.0 if the voted best response (ties broken at random, as SPCT does) is the true best, else 0.0.

        A lone response has no best to pick (it would count as right whatever the scores): benchmarks with
        single-response items override this rule."""
        if len(truth) < 2:
            raise ValueError(f"{self.name}: the best-response rule needs two or more responses, got {len(truth)}")
        return float(vote.best is not None and vote.best == best_index(truth))

    def label(self, truth: Sequence[float]) -> float:
        """The per-item ground truth a ROC-AUC benchmark needs; accuracy benchmarks need none."""
        return 0.0

    def unit(self, item_id: str) -> str:
        """The scoring unit an item belongs to: items whose scores only make sense together (a pair judged in
        both orders) share one, and a bootstrap resamples units whole. Default: each item on its own."""
        return item_id

    def scores(self, table: Table) -> dict[str, float]:
        """:meth:`summarize` with ``headline`` first: the benchmark's ``overall`` score, or, where the data lacks
        parts of the benchmark (so there is no overall), its ``accuracy`` over the items given (NaN without)."""
        summary = self.summarize(table)
        return {HEADLINE: summary.get(headline_key(summary), math.nan), **summary}

    def coverage(self, subsets: Sequence[str]) -> list[str]:
        """Warnings about the parts of the benchmark the data lacks, given the subsets it holds (none by default)."""
        return []

    def summarize(self, table: Table) -> dict[str, float]:
        """Default rule: per-subset accuracy, and overall accuracy over all items."""
        scores = {"overall": float(table.values.mean())}
        scores.update({f"subsets/{s}": v for s, v in table.subset_means().items()})
        return scores


Entry = EvalItem | BadRow
"""What :meth:`Benchmark.read` yields."""


def require(row: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Raise a ValueError if ``row`` lacks any of ``keys``."""
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"missing field(s) {missing}; expected {list(keys)}, got {brief(sorted(row))}")


def text(row: Mapping[str, Any], key: str) -> str:
    """``row[key]`` when it is a string, else a ValueError naming the field."""
    value = row[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {type(value).__name__} {brief(value)}")
    return value


def texts(row: Mapping[str, Any], key: str, size: int | None = None) -> list[str]:
    """``row[key]`` when it is a non-empty list of strings (of ``size`` when given), else a ValueError naming the
    field (a string is not taken for a list of its characters)."""
    value = row[key]
    want = "a list of strings" if size is None else f"a list of {size} strings"
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"{key} must be {want}, got {type(value).__name__} {brief(value)}")
    bad = [i for i, v in enumerate(value) if not isinstance(v, str)]
    if bad:
        raise ValueError(
            f"{key} must be {want}; item {bad[0]} is {type(value[bad[0]]).__name__} {brief(value[bad[0]])}"
        )
    if not value or (size is not None and len(value) != size):
        raise ValueError(f"{key} must be {want}, got {len(value)}")
    return list(value)


def rows(source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[Row]:
    """Each row of ``source`` read as a :class:`grm.sources.Source` (a hub dataset is downloaded and cached, not
    streamed), readable or not: a file's rows are named by the file's path as given (a folder's by the folder and
    the file's path in it), a hub dataset's by ``source:split``."""
    data = Source(source, split=split, name=name, streaming=False)
    path = Path(source)
    for record in data:
        label = record.where.removeprefix(f"{record.origin} ") if len(data.parts) > 1 else record.where
        place = str(path / record.origin) if path.is_dir() else str(source) if path.is_file() else record.origin
        place += f" (config {name})" if name and not path.exists() else ""
        where = f"{place} {label}"
        error = None if record.error is None else record.error.removeprefix(f"{record.where}: ")
        yield Row(record.origin, record.index, where, record.row, error)


def parse_rows(source_rows: Iterable[Row], parse: Callable[[Row], Iterable[EvalItem]]) -> Iterator[EvalItem | BadRow]:
    """The items ``parse`` makes of each row (``row.row`` is then a dict), each checked (:func:`check_item`); a row
    that was unreadable, or that ``parse`` refuses (a ValueError or TypeError) or makes invalid items of, becomes a
    :class:`BadRow`, and the next rows are read on."""
    for r in source_rows:
        if r.row is None:
            yield BadRow(r.where, r.error or "unreadable")
            continue
        try:
            items = [check_item(item) for item in parse(r)]
        except (ValueError, TypeError) as e:
            yield BadRow(r.where, str(e))
            continue
        yield from items


def check_item(item: EvalItem) -> EvalItem:
    """``item`` when it can be scored: a query (a string or chat messages ending with a user turn), one or more
    response strings, one number of truth per response, a string id; else a ValueError or TypeError saying what
    is wrong."""
    normalize_query(item.query)
    normalize_responses(item.responses)
    if len(item.truth) != len(item.responses) or not all(
        isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) for t in item.truth
    ):
        raise ValueError(
            f"expected one finite number of truth per response ({len(item.responses)}), got {brief(item.truth)}"
        )
    if not isinstance(item.id, str) or not item.id:
        raise ValueError(f"an item id must be a non-empty string, got {brief(item.id)}")
    return item
