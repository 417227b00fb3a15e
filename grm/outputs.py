"""Where ``grm score`` writes its rows: a JSONL file appended to row by row (a re-run resumes from it), a parquet
file written at the end from such a JSONL cache beside it (so an interrupted run still resumes), or standard
output. A file output's settings are recorded beside it (:mod:`grm.settings`; a parquet file also holds them in
its metadata)."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from grm.jsonl import JsonlWriter, drop_rows, load_finished, read_rows

logger = logging.getLogger(__name__)

STDOUT = "-"
"""The output name that means standard output."""

SETTINGS_METADATA = "grm.settings"
"""The key of a parquet output's metadata that holds the settings it was written with (a JSON object)."""


class ScoreOutput:
    """The output named ``target``: ``-`` (standard output; nothing to resume from), a ``.parquet`` file (rows go
    to ``<target>.cache.jsonl`` first, which :meth:`finish` turns into the parquet file), or any other path (a JSONL
    file). ``path`` is the file named (None for standard output): its settings are recorded beside it."""

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self.path = None if self.target == STDOUT else Path(target)
        self.parquet = self.path if self.path is not None and self.path.suffix == ".parquet" else None
        self.jsonl: Path | None = self.path
        if self.parquet is not None:
            self.jsonl = self.parquet.with_name(self.parquet.name + ".cache.jsonl")

    def finished(self, key: str, keep: Callable[[dict[str, Any]], Any]) -> dict[Any, Any]:
        """The rows already written, by ``row[key]`` (see :func:`grm.jsonl.load_finished`)."""
        if self.parquet is not None and self.parquet.exists() and not self.jsonl.exists():  # type: ignore[union-attr]
            logger.warning(
                "%s exists without %s, the cache a run resumes from: every row is scored again, and %s is replaced "
                "at the end",
                self.parquet,
                self.jsonl,
                self.parquet,
            )
        return {} if self.jsonl is None else load_finished(self.jsonl, key, keep)

    def drop(self, rows: Callable[[dict[str, Any]], Any]) -> int:
        """Remove the rows written for which ``rows(row)`` is true (so that they are done again); how many."""
        return 0 if self.jsonl is None else drop_rows(self.jsonl, rows)

    def writer(self) -> JsonlWriter:
        """Where rows are written as they are scored."""
        return JsonlWriter(sys.stdout if self.jsonl is None else self.jsonl)

    def finish(self, settings: dict[str, Any] | None = None) -> None:
        """Write the parquet file from the JSONL cache, ``settings`` in its metadata (a no-op for other outputs)."""
        if self.parquet is not None and self.jsonl is not None:
            metadata = None if settings is None else {SETTINGS_METADATA: json.dumps(settings)}
            write_parquet(self.jsonl, self.parquet, metadata=metadata)

    def __str__(self) -> str:
        return "standard output" if self.jsonl is None else self.target


def write_parquet(jsonl: Path, parquet: Path, batch_rows: int = 2048, metadata: dict[str, str] | None = None) -> None:
    """Write the rows of ``jsonl`` to ``parquet`` (replaced whole, never left half-written), ``batch_rows`` at a
    time: one pass finds a schema every row fits (a column null in some rows takes its type from the others), a
    second writes them. ``id`` is written as a string, since a parquet column has one type. ``metadata`` goes to
    the file's schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = None
    for batch in _batches(jsonl, batch_rows):
        columns = dict.fromkeys(k for row in batch for k in row)  # from_pylist alone reads the first row's keys
        found = pa.table({k: [row.get(k) for row in batch] for k in columns}).schema
        schema = found if schema is None else pa.unify_schemas([schema, found], promote_options="permissive")
    schema = schema or pa.schema([("index", pa.int64())])
    if metadata:
        schema = schema.with_metadata(metadata)
    partial = parquet.with_name(parquet.name + ".partial")
    parquet.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(partial, schema) as writer:
        for batch in _batches(jsonl, batch_rows):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    os.replace(partial, parquet)


def _batches(jsonl: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for _, row, error in read_rows(jsonl):
        if row is None:
            raise ValueError(f"{jsonl}: {error}")
        if row.get("id") is not None:
            row["id"] = str(row["id"])
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
