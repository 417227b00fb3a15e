"""Append-only JSONL files that long jobs write row by row and resume from."""

from __future__ import annotations

import codecs
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger(__name__)


def read_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield ``(line_number, row, error)`` for each non-blank line (1-based numbers, lines split at ``\\n``); a
    line that is not a JSON object (or not UTF-8, or nested too deeply to read) gives ``row=None`` and an error
    naming the line. A UTF-8 byte order mark at the start of the file is skipped."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            row, error = _decode(raw)
            if error:
                yield number, None, f"line {number}: {error}"
            elif row is not _BLANK:
                yield number, row, None


_BLANK = object()


def _decode(raw: bytes) -> tuple[Any, str | None]:
    """One line's JSON object, :data:`_BLANK` for a blank line, or an error saying why it cannot be read."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
    if not line.strip():
        return _BLANK, None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        return None, "not readable: JSON nested too deeply"
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        return None, f"not readable: {e}"
    if not isinstance(row, dict):
        return None, f"expected a JSON object, got {type(row).__name__}"
    return row, None


def plain_id(value: Any) -> bool:
    """Whether ``value`` can be a row's or a request's ``id`` in standard JSON: a string, an integer, a finite
    number or null."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int)


def dumps(value: Any) -> str:
    """Standard JSON for ``value`` (UTF-8 text kept as is): a NaN or infinite float becomes null rather than the
    non-standard ``NaN`` / ``Infinity`` that other JSON readers refuse."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def load_finished(path: str | Path, key: str, keep: Callable[[dict[str, Any]], Any] | None = None) -> dict[Any, Any]:
    """Rows already written to an output file, by ``row[key]``; with ``keep``, ``keep(row)`` instead of the row
    (applied as each line is read, so memory holds only what the caller needs, not every finished row).

    A final line cut off by a crash (no newline, not valid JSON) is removed from the file so that appending
    can go on; any other unreadable line is an error, since it means the file is not ours.
    """
    path = Path(path)
    if not path.exists():
        return {}
    _repair_last_line(path)
    done: dict[Any, Any] = {}
    for number, row, error in read_rows(path):
        if row is None or key not in row:
            raise ValueError(f"{path}: {error or f'line {number} has no {key!r}'}; is this a grm output file?")
        done[row[key]] = row if keep is None else keep(row)
    return done


def drop_rows(path: str | Path, drop: Callable[[dict[str, Any]], Any]) -> int:
    """Remove the rows for which ``drop(row)`` is true from a JSONL file written by :class:`JsonlWriter` (the file
    is replaced whole, never left half-written); returns how many were removed. Other lines are kept as they are."""
    path = Path(path)
    if not path.exists():
        return 0
    _repair_last_line(path)
    partial = path.with_name(path.name + ".partial")
    removed = 0
    with open(path, "rb") as src, open(partial, "wb") as out:
        for raw in src:
            row, _ = _decode(raw)
            if isinstance(row, dict) and drop(row):
                removed += 1
            else:
                out.write(raw)
    if removed:
        os.replace(partial, path)
    else:
        partial.unlink()
    return removed


def _repair_last_line(path: Path, block: int = 1 << 16) -> None:
    """Complete or drop a last line without a newline, reading only the file's tail."""
    with open(path, "r+b") as f:
        end = f.seek(0, 2)
        if end == 0:
            return
        f.seek(end - 1)
        if f.read(1) == b"\n":
            return
        start, tail = end, b""
        while start > 0 and b"\n" not in tail:
            start = max(0, start - block)
            f.seek(start)
            tail = f.read(end - start)
        cut = start + tail.rfind(b"\n") + 1
        f.seek(cut)
        last = f.read()
        try:
            json.loads(last)
            f.write(b"\n")
        except json.JSONDecodeError:
            logger.warning("%s: dropping a truncated last line (%d bytes) left by an interrupted run", path, len(last))
            f.truncate(cut)


class JsonlWriter:
    """Append rows to a JSONL file, or write them to a text stream such as ``sys.stdout`` (left open), flushing
    each so that a crash loses at most the row being written; rows are written as standard JSON (see
    :func:`dumps`)."""

    def __init__(self, path: str | Path | TextIO) -> None:
        if isinstance(path, str | Path):
            self.path: Path | None = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: TextIO = open(self.path, "a", encoding="utf-8")
        else:
            self.path, self._f = None, path

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(dumps(row) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self.path is not None:
            self._f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
