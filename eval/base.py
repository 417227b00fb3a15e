"""What every benchmark shares: the labelled item, the record readers, and the Benchmark interface."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grm.rule import best_index
from grm.sources import Source
from grm.types import Example
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


class Benchmark(ABC):
    """One benchmark: a loader of :class:`EvalItem` and its official scoring rule.

    ``value`` turns one item's vote into a number (or ``width`` numbers) and ``summarize`` turns a :class:`Table`
    of them into named scores: ``overall`` (the benchmark's headline), ``groups/<name>`` (sections) and
    ``subsets/<name>``. Items whose scores only make sense together share a :meth:`unit`.
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

    @abstractmethod
    def items(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[EvalItem]:
        """Stream the benchmark's items from a local file or folder, or from a hub dataset name."""

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

    def summarize(self, table: Table) -> dict[str, float]:
        """Default rule: per-subset accuracy, and overall accuracy over all items."""
        scores = {"overall": float(table.values.mean())}
        scores.update({f"subsets/{s}": v for s, v in table.subset_means().items()})
        return scores


def require(row: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    """Raise a ValueError naming ``where`` if ``row`` lacks any of ``keys``."""
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; expected {list(keys)}, got {sorted(row)}")


def iter_records(
    source: str | Path, *, split: str | None = None, name: str | None = None
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(origin, index, row)`` for each row of ``source`` read as a :class:`grm.sources.Source` (a hub dataset is
    downloaded and cached, not streamed): ``origin`` is the file's name (its path relative to a folder given) or
    ``source:split`` for a hub dataset, ``index`` the row's 0-based place in it. A row that cannot be read is a
    ValueError naming it."""
    for record in Source(source, split=split, name=name, streaming=False):
        if record.row is None:
            raise ValueError(f"{source}: {record.error}")
        yield record.origin, record.index, record.row
