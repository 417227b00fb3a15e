"""What every benchmark shares: the labelled item, the record readers, and the Benchmark interface."""

from __future__ import annotations

import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grm.jsonl import read_rows
from grm.rule import best_index
from grm.types import Example
from grm.voting import Vote

logger = logging.getLogger(__name__)

SUFFIXES = (".json", ".jsonl", ".parquet")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class DatasetUnavailable(FileNotFoundError):
    """The data is neither a local file or folder nor a hub dataset that could be loaded."""


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


def is_hub_id(source: str | Path) -> bool:
    """Whether ``source`` names a hub dataset (``owner/name``) rather than a local path."""
    return isinstance(source, str) and not Path(source).exists() and bool(_HUB_ID.match(source))


def iter_records(
    source: str | Path, *, split: str | None = None, name: str | None = None
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Rows of a local JSON (array), JSONL or parquet file, of every such file below a folder (sorted), or of a
    hub dataset loaded with ``datasets.load_dataset(source, name, split=split)``.

    Yields ``(origin, index, row)``: ``origin`` is the file's path (relative to a folder given) or
    ``source:split`` for a hub dataset, ``index`` the row's 0-based position in it.
    """
    path = Path(source)
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()), key=lambda p: str(p))
        if not files:
            raise DatasetUnavailable(f"{path}: no {', '.join(SUFFIXES)} files in this folder")
        for f in files:
            for index, row in read_file(f):
                yield f.relative_to(path).as_posix(), index, row
    elif path.is_file():
        for index, row in read_file(path):
            yield path.name, index, row
    elif is_hub_id(str(source)):
        yield from _hub_records(str(source), split=split, name=name)
    else:
        raise DatasetUnavailable(f"{source}: no such file or folder, and not a hub dataset name (owner/name)")


def read_file(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(index, row)`` for each object in a JSON array, JSONL or parquet file; a malformed row is an error."""
    if path.suffix == ".jsonl":
        for index, (_, row, error) in enumerate(read_rows(path)):
            if row is None:
                raise ValueError(f"{path}: {error}")
            yield index, row
    elif path.suffix == ".json":
        with open(path, encoding="utf-8") as f:
            try:
                rows = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); expected an array") from e
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON array of objects, got a {type(rows).__name__}")
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValueError(f"{path}: item {index} is a {type(row).__name__}, expected an object")
            yield index, row
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        index = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for row in batch.to_pylist():
                yield index, row
                index += 1
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; expected one of {SUFFIXES}")


def _hub_records(source: str, *, split: str | None, name: str | None) -> Iterator[tuple[str, int, dict[str, Any]]]:
    try:
        from datasets import load_dataset

        loaded = load_dataset(source, name, split=split)
    except Exception as e:  # the datasets library raises many kinds (ConnectionError, DatasetNotFoundError, ...)
        raise DatasetUnavailable(
            f"could not load {source!r} (config {name!r}, split {split!r}) from the Hugging Face Hub: {e}. "
            "Without hub access, get the data elsewhere and pass a local JSON, JSONL or parquet path instead."
        ) from e
    parts = [(split, loaded)] if split is not None else list(loaded.items())
    for part, dataset in parts:
        for index, row in enumerate(dataset):
            yield f"{source}:{part}", index, row
