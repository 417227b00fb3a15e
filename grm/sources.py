"""Rows from where users keep data: JSONL, JSON, parquet and CSV files, folders of them, folders written by
``datasets``' ``save_to_disk``, and hub datasets. Every source is streamed (files read a batch or a line at a time,
hub datasets with ``streaming=True``), so memory stays flat however many rows it holds; a row that cannot be read
is a :class:`Record` with an error naming it, and the rows after it are still read where the format allows."""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from grm.jsonl import read_rows
from grm.types import brief

FILE_TYPES = (".jsonl", ".json", ".parquet", ".csv")
"""The file types read (a folder is read file by file)."""

SPLIT_WORDS = ("train", "training", "validation", "valid", "val", "dev", "test", "testing", "eval", "evaluation")
"""Split names recognised in a folder's file names without being asked for (see :class:`Source`)."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHUNK = 1 << 16
_UNDECODED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8
_CSV_FIELD_LIMIT = 1 << 26  # characters per CSV cell (Python's default, 131,072, is short for long responses)

Rows = Iterator[tuple[int, str, Any, str | None]]
"""What a part of a source yields: ``(slot, label, row, error)``, ``slot`` the row's 0-based place in the part
(a JSONL file's line number - 1), ``label`` its name for a person (``line 7``, ``row 7``)."""


class DatasetUnavailable(FileNotFoundError):
    """The data is neither a local file or folder nor a hub dataset that could be loaded."""


@dataclass(frozen=True)
class Record:
    """One row of a :class:`Source`, or why it could not be read.

    ``origin`` is the part it came from (a file name, a path relative to the folder given, or ``name:split`` for
    a hub dataset), ``index`` its 0-based place among that part's rows, ``position`` its 0-based key in the whole
    source (a JSONL file's line number - 1, blank lines keeping their numbers; else its row number, counting on
    across a folder's files and a dataset's splits), ``where`` its name in messages (``line 7``; with the origin in
    front when the source has several parts). ``error`` (``"<where>: <reason>"``) is set when ``row`` is None.
    """

    origin: str
    index: int
    position: int
    where: str
    row: dict[str, Any] | None
    error: str | None = None


@dataclass
class _Part:
    origin: str
    split: str | None
    rows: Callable[[], Rows]
    size: int | None = None


class Source:
    """The rows of ``source``: a ``.jsonl``, ``.json`` (an array of objects, or JSON lines), ``.parquet`` or
    ``.csv`` file; a folder of such files (read in sorted order; hidden folders skipped) or written by
    ``save_to_disk``; or a hub dataset name (``owner/name``) loaded with ``datasets.load_dataset(source, name,
    split=split, streaming=streaming)``.

    ``split`` picks a split of a hub dataset, of a ``save_to_disk`` folder, or of a folder whose files name their
    split (``test.jsonl``, ``data/test-00000-of-00001.parquet``, ``test/part.csv``); a single file is read whatever
    the split. A folder whose files name no split of :data:`SPLIT_WORDS` is read whole. With no split, every split
    is read, one after another.

    The source is resolved when built (a missing path or an unreachable hub dataset raises
    :class:`DatasetUnavailable` there, before any row is read); iterating yields a :class:`Record` per row, and
    may be repeated.
    """

    def __init__(
        self, source: str | Path, *, split: str | None = None, name: str | None = None, streaming: bool = True
    ) -> None:
        self.source = str(source)
        path = Path(source)
        if path.is_dir():
            self.parts = _folder_parts(path, split)
        elif path.is_file():
            self.parts = [_file_part(path, path.name)]
        elif is_hub_id(self.source):
            self.parts = _hub_parts(self.source, split, name, streaming)
        else:
            raise DatasetUnavailable(f"{source}: no such file or folder, and not a hub dataset name (owner/name)")

    @property
    def splits(self) -> list[str]:
        """The splits read, in order (empty when the parts are not splits, e.g. a single file)."""
        return list(dict.fromkeys(p.split for p in self.parts if p.split is not None))

    @property
    def total(self) -> int | None:
        """How many rows there are, when every part says (parquet files, datasets); else None."""
        sizes = [p.size for p in self.parts]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Record]:
        offset = 0
        for part in self.parts:
            end = 0
            for index, (slot, label, row, error) in enumerate(part.rows()):
                where = label if len(self.parts) == 1 else f"{part.origin} {label}"
                if error is None and not isinstance(row, dict):
                    error = f"expected a JSON object, got {type(row).__name__}"
                if error is not None:
                    yield Record(part.origin, index, offset + slot, where, None, f"{where}: {error}")
                else:
                    yield Record(part.origin, index, offset + slot, where, row)
                end = slot + 1
            offset += end


def is_hub_id(source: str | Path) -> bool:
    """Whether ``source`` names a hub dataset (``owner/name``) rather than a local path (one that does not exist,
    or a name ending in a data file's suffix, e.g. a mistyped ``data/rows.jsonl``)."""
    return (
        isinstance(source, str)
        and not Path(source).exists()
        and bool(_HUB_ID.match(source))
        and Path(source).suffix not in FILE_TYPES
    )


def _file_part(path: Path, origin: str, split: str | None = None) -> _Part:
    readers = {".jsonl": _jsonl_rows, ".json": _json_rows, ".csv": _csv_rows}
    if path.suffix == ".parquet":
        return _parquet_part(path, origin, split)
    if path.suffix not in readers:
        raise ValueError(f"{path}: unknown data file type {path.suffix!r}; expected one of {', '.join(FILE_TYPES)}")
    read = readers[path.suffix]
    return _Part(origin, split, lambda: read(path))


def _names_split(relative: PurePosixPath, split: str) -> bool:
    """Whether a file's path names ``split``: a folder of that name, or a file name starting with it."""
    return split in relative.parts[:-1] or re.match(rf"{re.escape(split)}(?:[-_. ]|$)", relative.stem) is not None


def _folder_parts(folder: Path, split: str | None) -> list[_Part]:
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        return _disk_parts(folder, split)
    files = sorted(
        (p.relative_to(folder).as_posix(), p)
        for p in folder.rglob("*")
        if p.suffix in FILE_TYPES and p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts)
    )
    if not files:
        raise DatasetUnavailable(f"{folder}: no {', '.join(FILE_TYPES)} files in this folder")
    named = {rel: next((w for w in SPLIT_WORDS if _names_split(PurePosixPath(rel), w)), None) for rel, _ in files}
    if split is not None:
        chosen = [(rel, p) for rel, p in files if _names_split(PurePosixPath(rel), split)]
        if chosen:
            return [_file_part(p, rel, split) for rel, p in chosen]
        found = sorted({w for w in named.values() if w is not None})
        if found:
            raise DatasetUnavailable(f"{folder}: no files of split {split!r}; its files name the splits {found}")
    return [_file_part(p, rel, named[rel]) for rel, p in files]


def _disk_parts(folder: Path, split: str | None) -> list[_Part]:
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.Dataset):
        return [_dataset_part(folder.name, None, loaded)]
    if split is not None and split not in loaded:
        raise DatasetUnavailable(f"{folder}: no split {split!r}; it has {sorted(loaded)}")
    chosen = [split] if split is not None else list(loaded)
    return [_dataset_part(f"{folder.name}:{s}", s, loaded[s]) for s in chosen]


def _hub_parts(source: str, split: str | None, name: str | None, streaming: bool) -> list[_Part]:
    try:
        from datasets import load_dataset

        loaded = load_dataset(source, name, split=split, streaming=streaming)
    except Exception as e:  # the datasets library raises many kinds (ConnectionError, DatasetNotFoundError, ...)
        raise DatasetUnavailable(
            f"could not load {source!r} (config {name!r}, split {split!r}) from the Hugging Face Hub: {e}. "
            "Without hub access, get the data elsewhere and pass a local JSONL, JSON, parquet or CSV path instead."
        ) from e
    parts = [(split, loaded)] if split is not None else list(loaded.items())
    return [_dataset_part(f"{source}:{s}", s, d) for s, d in parts]


def _dataset_part(origin: str, split: str | None, dataset: Any) -> _Part:
    """A ``datasets`` Dataset (memory-mapped) or IterableDataset (streamed)."""
    try:
        size = len(dataset)
    except TypeError:  # an IterableDataset: its size only if the dataset's card says
        info = getattr(dataset, "info", None)
        known = info.splits.get(split) if split is not None and info is not None and info.splits else None
        size = known.num_examples if known is not None and known.num_examples else None

    def rows() -> Rows:
        for slot, row in enumerate(dataset):
            yield slot, f"row {slot + 1}", row, None

    return _Part(origin, split, rows, size)


def _parquet_part(path: Path, origin: str, split: str | None) -> _Part:
    import pyarrow.parquet as pq

    try:
        size = pq.ParquetFile(path).metadata.num_rows
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not parquet
        raise ValueError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from e

    def rows() -> Rows:
        slot = 0
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
                for row in batch.to_pylist():
                    yield slot, f"row {slot + 1}", row, None
                    slot += 1
        except (OSError, ValueError) as e:  # a damaged row group: the rows after it cannot be found
            raise ValueError(f"{path}: unreadable after row {slot} ({type(e).__name__}: {e})") from e

    return _Part(origin, split, rows, size)


def _jsonl_rows(path: Path) -> Rows:
    for number, row, error in read_rows(path):
        label = f"line {number}"
        yield number - 1, label, row, None if error is None else error.removeprefix(f"{label}: ")


def _csv_rows(path: Path) -> Rows:
    """Each line after the header a row of strings (a quoted cell may span lines); a line that is not UTF-8, a cell
    over the size limit or a row with more or fewer cells than the header is an error row."""
    bad: set[int] = set()

    def lines() -> Iterator[str]:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                raw = raw.removeprefix(codecs.BOM_UTF8) if number == 1 else raw
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad.add(number)
                    yield raw.decode("utf-8", "replace")

    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    reader = csv.reader(lines())
    header = next(reader, None)
    if header is None:
        return
    if bad:
        raise ValueError(f"{path}: the header line is not valid UTF-8")
    if len(set(header)) < len(header):
        raise ValueError(f"{path}: the header names a column twice: {brief(header)}")
    n, last = 0, reader.line_num
    while True:
        first = last + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            cells, error = None, f"not valid CSV ({e})"
        else:
            error = None
        last = reader.line_num
        if cells == []:  # a blank line
            continue
        n += 1
        if any(first <= b <= last for b in bad):
            error = "not valid UTF-8"
        elif cells is not None and len(cells) != len(header):
            error = f"{len(cells)} cells where the header has {len(header)}"
        bad = {b for b in bad if b > last}
        yield n - 1, f"row {n} (line {first})", None if error else dict(zip(header, cells)), error  # type: ignore[arg-type]


def _json_rows(path: Path) -> Rows:
    """The items of a JSON array, decoded one at a time from a buffer that holds little more than the item being
    read; a file that starts with ``{`` is read as JSON lines. An item that is not valid JSON (or nested too deeply)
    is an error row, and the rest of the file cannot be found: reading stops there; an item with bytes that are not
    UTF-8 is an error row, and reading goes on."""
    with open(path, "rb") as f:
        head = f.read(_CHUNK).removeprefix(codecs.BOM_UTF8).lstrip()
    if head.startswith(b"{"):
        yield from _jsonl_rows(path)
        return
    if not head.startswith(b"["):
        raise ValueError(f"{path}: expected a JSON array of objects or JSON lines, got {brief(head[:20])}")
    yield from _JsonArray(path).items()


class _JsonArray:
    """A JSON array read item by item: ``buf[pos:]`` is the text not yet read, ``line`` the line ``pos`` is on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.decoder = json.JSONDecoder()
        self.utf8 = codecs.getincrementaldecoder("utf-8")("surrogateescape")  # bad bytes: found per item
        self.buf, self.pos, self.counted, self.line, self.eof = "", 0, 0, 1, False

    def items(self) -> Rows:
        with open(self.path, "rb") as self.file:
            try:
                self._more()
                self.pos = 1 if self.buf.startswith("\ufeff") else 0
                self._skip_space()
                self.pos += 1  # the '[' seen by _json_rows
                for n in itertools.count(1):
                    if not self._skip_space():
                        raise ValueError("the array is not closed")
                    if self.buf[self.pos] == "]":
                        self.pos += 1
                        if self._skip_space():
                            self._advance_line()
                            raise ValueError(f"text after the array's end (line {self.line})")
                        return
                    self._advance_line()
                    label = f"item {n} (line {self.line})"
                    value, error = self._value()
                    yield n - 1, label, value, error
                    if error is not None and self.pos < 0:
                        return
                    if not self._skip_space():
                        raise ValueError(f"the array is not closed after item {n}")
                    if self.buf[self.pos] == ",":
                        self.pos += 1
                    elif self.buf[self.pos] != "]":
                        raise ValueError(f"expected ',' or ']' after item {n} (line {self.line})")
            except ValueError as e:
                raise ValueError(f"{self.path}: {e}") from e

    def _value(self) -> tuple[Any, str | None]:
        """The next item, or None and why it cannot be read; ``pos`` is then past the item, or -1 when its end
        cannot be found."""
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                cut = e.pos >= len(self.buf) - 8 or e.msg.startswith("Unterminated string")
                if cut and self._more():
                    continue
                reason = f"not valid JSON ({e.msg}, {e.pos - self.pos} characters into the item)"
                self.pos = -1
                return None, reason
            except RecursionError:
                self.pos = -1
                return None, "not readable: JSON nested too deeply"
            if end < len(self.buf) or not self._more():  # a number cut at the buffer's end reads as a shorter one
                bad = _UNDECODED.search(self.buf, self.pos, end)
                self.pos = end
                return (None, "not valid UTF-8") if bad else (value, None)

    def _skip_space(self) -> bool:
        """Move past white space; whether anything is left."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return True
            if not self._more():
                return False

    def _advance_line(self) -> None:
        self.line += self.buf.count("\n", self.counted, self.pos)
        self.counted = self.pos

    def _more(self) -> bool:
        """Read more text (at least as much again as is buffered, so an item is decoded O(1) times on average),
        dropping what was read; False at the end of the file."""
        if self.eof:
            return False
        self._advance_line()
        self.buf, self.counted, self.pos = self.buf[self.pos :], 0, 0
        raw = self.file.read(max(_CHUNK, len(self.buf)))
        self.eof = not raw
        self.buf += self.utf8.decode(raw, final=self.eof)
        return True
