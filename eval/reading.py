"""Reading a benchmark's items for an evaluation: the first ``limit``, ids unique, and bad rows skipped (with a
warning and a count) or refused (every bad row listed), by the benchmark's rule."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from grm.eval.base import BadRow, Benchmark, EvalItem

logger = logging.getLogger(__name__)

LISTED = 20
"""How many bad rows a warning, an error or a result lists by name (all are counted)."""


class BadData(ValueError):
    """Rows of the data are not valid items of a benchmark that cannot skip them; ``rows`` lists the first
    :data:`LISTED`, ``count`` counts them all."""

    def __init__(self, data: str | Path, bench: Benchmark, rows: list[BadRow], count: int) -> None:
        listed = "".join(f"\n  {row}" for row in rows)
        more = f"\n  ... and {count - len(rows)} more" if count > len(rows) else ""
        super().__init__(
            f"{data}: {count} row(s) are not valid {bench.name} items:{listed}{more}\n{bench.name}'s scores are "
            "defined over all its items, so none is skipped: fix these rows, or skip them (skip_bad_rows=True, "
            "--skip-bad-rows), and the scores are then those of the other items."
        )
        self.rows, self.count = rows, count


class ItemReader:
    """The items of ``data`` for ``bench``, the first ``limit`` of them (nothing after them is read). A repeated id
    is a ValueError (ids key the cache). A bad row is skipped (``skip``: logged, counted in :attr:`n_skipped`, the
    first :data:`LISTED` kept in :attr:`skipped`), or stops the reading: the rest of the data is read for its bad
    rows (nothing is scored meanwhile) and :class:`BadData` lists them all."""

    def __init__(
        self,
        bench: Benchmark,
        data: str | Path,
        *,
        split: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        skip: bool = False,
    ) -> None:
        self.bench, self.data, self.split, self.name, self.limit, self.skip = bench, data, split, name, limit, skip
        self.skipped: list[BadRow] = []
        self.n_skipped = 0

    def __iter__(self) -> Iterator[EvalItem]:
        entries = self.bench.read(self.data, split=self.split, name=self.name)
        seen: set[str] = set()
        while self.limit is None or len(seen) < self.limit:
            entry = next(entries, None)
            if entry is None:
                break
            if isinstance(entry, BadRow):
                if not self.skip:
                    raise self._refusal(entry, entries, len(seen))
                self._skip(entry)
                continue
            if entry.id in seen:
                raise ValueError(f"duplicate item id {entry.id!r} in {self.data}; ids key the cache and must be unique")
            seen.add(entry.id)
            yield entry
        if self.n_skipped:
            kept = len(self.skipped)
            logger.warning(
                "%s: skipped %d bad row(s) (the first %d named in the result)", self.data, self.n_skipped, kept
            )

    def _skip(self, row: BadRow) -> None:
        self.n_skipped += 1
        if len(self.skipped) < LISTED:
            self.skipped.append(row)
            logger.warning("skipped %s", row)

    def _refusal(self, first: BadRow, rest: Iterator[EvalItem | BadRow], n_items: int) -> BadData:
        """The error listing ``first`` and the bad rows of ``rest`` (up to the limit's last item)."""
        listed, count = [first], 1
        for entry in rest:
            if isinstance(entry, BadRow):
                count += 1
                if len(listed) < LISTED:
                    listed.append(entry)
            else:
                n_items += 1
                if self.limit is not None and n_items >= self.limit:
                    break
        return BadData(self.data, self.bench, listed, count)
