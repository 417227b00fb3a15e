"""What an input row means: which shape it has, and the :class:`~grm.types.Item` (and id) it becomes.

A row is read in the first shape whose columns it has (see :data:`SHAPES`), unless :class:`Columns` name them:

- ``responses``: ``query`` (or ``prompt``) and ``responses``, a list of strings (in CSV, a JSON array);
- ``pair``: ``prompt`` (or ``query``), ``chosen`` and ``rejected``: strings, or chat messages ending with the
  assistant's answer (TRL's preference format; without a prompt column, the messages before the answers are the
  prompt and must be the same in both); both are judged together;
- ``single``: ``prompt`` (or ``query``) and ``response`` (or ``completion``, a string or messages as above): one
  response, judged alone (pointwise).

Optional ``id``, ``principles`` and ``reference`` columns are kept; other columns are ignored. A null value
counts as no column (a parquet file or a dataset gives every row every column).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grm.jsonl import plain_id
from grm.types import Item, Message, Reward, brief

SHAPES = {
    "responses": "{query, responses}",
    "pair": "{prompt, chosen, rejected} (a preference pair)",
    "single": "{prompt, response} (prompt or query; response or completion)",
}
"""Each shape a row is recognised in, in the order they are tried, with the columns it needs."""

_QUERY_COLUMNS = ("query", "prompt")
_SINGLE_COLUMNS = ("response", "completion")


class RowError(ValueError):
    """A row that cannot become an item; ``reason`` is a short key to count such rows by."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Columns:
    """Columns named by the user, in place of the shapes': ``query`` holds the query; ``responses`` a list of
    responses, or ``response_columns`` one response each (a string, or messages ending with the answer)."""

    query: str | None = None
    responses: str | None = None
    response_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.responses is not None and self.response_columns:
            raise ValueError("name the responses either as one list column or as response columns, not both")
        if any(not c for c in self.response_columns) or len(set(self.response_columns)) < len(self.response_columns):
            raise ValueError(f"response columns must be distinct, non-empty names; got {list(self.response_columns)}")

    @classmethod
    def parse(cls, query: str | None, responses: str | None, response_columns: str | None) -> Columns:
        """From command-line values: ``response_columns`` comma-separated (``a,b,c``)."""
        names = tuple(c.strip() for c in response_columns.split(",")) if response_columns is not None else ()
        return cls(query, responses, names)


@dataclass(frozen=True)
class RowItem:
    """A row read: its ``id`` and ``item`` and the ``shape`` it was read in, or ``error`` saying why not."""

    id: Any
    item: Item | None
    shape: str | None = None
    error: str | None = None


def row_item(row: Any, where: str, columns: Columns = Columns()) -> RowItem:
    """Read ``row`` (named ``where`` in errors, e.g. ``line 7``) as an item. Never raises, whatever the row holds:
    a wrong type, a missing column, a row that fits no shape, an ``id`` that is not a string, a finite number or
    null give a :class:`RowItem` whose error names ``where`` and what is wrong."""
    if not isinstance(row, Mapping):
        return RowItem(None, None, error=f"{where}: expected a JSON object, got {type(row).__name__}")
    row_id = row.get("id")
    if not plain_id(row_id):
        return RowItem(None, None, error=f"{where}: id must be a string, a finite number or null, got {brief(row_id)}")
    try:
        shape, query, responses = _read(row, columns)
        extra = {k: row.get(k) for k in ("principles", "reference")}
        item = Item.coerce({"query": query, "responses": responses, **extra})
    except (TypeError, ValueError) as e:
        return RowItem(row_id, None, error=f"{where}: {e}")
    except Exception as e:  # e.g. a structure nested too deeply to inspect
        return RowItem(row_id, None, error=f"{where}: unreadable row ({type(e).__name__})")
    return RowItem(row_id, item, shape)


def _read(row: Mapping[str, Any], columns: Columns) -> tuple[str, Any, Any]:
    """``(shape, query, responses)`` of a row."""
    given = {c for c in (*_QUERY_COLUMNS, "responses", "chosen", "rejected", *_SINGLE_COLUMNS) if _has(row, c)}
    query_column = columns.query or next((c for c in _QUERY_COLUMNS if c in given), None)
    query = _column(row, query_column) if query_column is not None else None
    if columns.responses is not None:
        shape, responses = "columns", _list(_column(row, columns.responses))
    elif columns.response_columns:
        shape = "columns"
        query, responses = answers([(c, _column(row, c)) for c in columns.response_columns], query)
    elif "responses" in given:
        shape, responses = "responses", _list(row["responses"])
    elif {"chosen", "rejected"} <= given:
        shape = "pair"
        query, responses = answers([(c, row[c]) for c in ("chosen", "rejected")], query)
    elif given & set(_SINGLE_COLUMNS):
        column = next(c for c in _SINGLE_COLUMNS if c in given)
        shape = "single"
        query, responses = answers([(column, row[column])], query)
    else:
        raise ValueError(
            f"columns {_names(row)} fit no shape; expected {', '.join(SHAPES.values())}, or name the columns with "
            "--query-column and --responses-column or --response-columns"
        )
    if query is None:
        raise ValueError(f"no query: expected a column {' or '.join(map(repr, _QUERY_COLUMNS))}; got {_names(row)}")
    return shape, query, responses


def _has(row: Mapping[str, Any], name: str) -> bool:
    """Whether the row holds column ``name``: a null counts as absent, since a parquet file or a dataset gives
    every row every column, null where a row has none."""
    return row.get(name) is not None


def _column(row: Mapping[str, Any], name: str) -> Any:
    if not _has(row, name):
        raise ValueError(f"no column {brief(name)} (or it is null); the row has {_names(row)}")
    return row[name]


def _list(value: Any) -> Any:
    """A list of responses; one written as a JSON array in a string (how CSV holds a list) is decoded."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            raise ValueError("responses must be a list of strings; got a string that is not a JSON array") from None
    return value


def _names(row: Mapping[str, Any], at_most: int = 12) -> str:
    """The names of the row's columns that hold a value, for a message, bounded however many there are."""
    given = [k for k in row if row[k] is not None]
    names = [brief(k) for k in itertools.islice(given, at_most)]
    more = len(given) - at_most
    return "[" + ", ".join(names) + (f", ... ({more} more)" if more > 0 else "") + "]"


def answers(values: Sequence[tuple[str, Any]], query: Any) -> tuple[Any, list[str]]:
    """``(query, texts)`` of responses given as ``(column, value)``: each value a string, or chat messages ending
    with the assistant's answer; the messages before the answer continue ``query`` (or are the query when it is
    None) and must be the same for every response. Raises :class:`RowError` otherwise."""
    contexts, texts = [], []
    for column, value in values:
        context, text = _answer(value, column)
        contexts.append(context)
        texts.append(text)
    if any(c != contexts[0] for c in contexts[1:]):
        raise RowError("different_contexts", f"{' and '.join(c for c, _ in values)} continue different conversations")
    if contexts[0]:
        if query is None:
            query = []
        elif isinstance(query, str):
            query = [{"role": "user", "content": query}]
        elif not isinstance(query, list | tuple):
            raise RowError("invalid_row", f"the query must be a string or chat messages, got {brief(query)}")
        query = list(query) + contexts[0]
    return query, texts


def _answer(value: Any, column: str) -> tuple[list[Message], str]:
    """(messages before the answer, answer text) of one response value."""
    if isinstance(value, str):
        return [], value
    if isinstance(value, Sequence) and value and isinstance(value[-1], Mapping):
        last = value[-1]
        if last.get("role") == "assistant" and isinstance(last.get("content"), str):
            if all(isinstance(m, Mapping) for m in value[:-1]):
                return [dict(m) for m in value[:-1]], last["content"]
    raise RowError(
        "invalid_row", f"{column} must be a string or chat messages ending with an assistant turn, got {brief(value)}"
    )


def verdict(reward: Reward) -> dict[str, Any]:
    """For a pair (responses ``[chosen, rejected]``): ``winner`` (``chosen``, ``rejected``, ``tie``, or None when no
    judgement could be read) and ``margin``, chosen's mean score minus rejected's."""
    if reward.mean is None:
        return {"winner": None, "margin": None}
    margin = reward.mean[0] - reward.mean[1]
    return {"winner": "chosen" if margin > 0 else "rejected" if margin < 0 else "tie", "margin": margin}
