"""Preference data in the usual formats -> labelled GRM :class:`~grm.types.Example` items.

Each row is read in one of these formats (``format="auto"`` picks it per row from the columns, in this order):

- ``examples``: ``query``, ``responses``, ``truth`` (one ground-truth reward per response);
- ``best_of_n``: ``prompt`` (or ``query``), ``responses``, ``best`` (0-based index of the best response);
- ``ratings``: ``prompt`` (or ``query``), ``responses``, ``ratings`` (one number per response);
- ``pairs``: ``prompt`` (or ``query``), ``chosen``, ``rejected``: strings, or chat messages ending with the
  assistant's answer (TRL's preference format; without a prompt column, the messages before the answers are the
  prompt and must be the same in both);
- ``labelled``: ``prompt`` (or ``query``), ``response``, ``label`` (correct/incorrect: true/false, 1/0, or
  ``"correct"``/``"incorrect"``), giving one-response examples with truth 1 or 0 (score them with the
  ``correctness`` template, whose scores are 0/1).

A query is a string or chat messages ending with a user turn. Optional ``id``, ``principles`` and ``reference``
columns are kept; an example's ``id`` is the row's ``id`` or else its 0-based row number. Responses are shuffled
(seeded per row) so that the best one is not always first. Rows that cannot make a usable example (no unique best,
identical responses, a rating a template cannot give...) are skipped and counted by reason in :class:`LoadStats`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grm.rows import RowError, answers
from grm.seeding import seeded_rng
from grm.sources import Source
from grm.types import Example, normalize_query, normalize_responses

logger = logging.getLogger(__name__)

FORMATS = ("examples", "best_of_n", "ratings", "pairs", "labelled")
_COLUMNS = {  # format -> columns it needs besides the query
    "examples": ("responses", "truth"),
    "best_of_n": ("responses", "best"),
    "ratings": ("responses", "ratings"),
    "pairs": ("chosen", "rejected"),
    "labelled": ("response", "label"),
}
_LABELS = {"correct": 1.0, "incorrect": 0.0, "true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}  # "1": from CSV
_WARN_PER_REASON = 3  # rejections logged as warnings per reason; the rest only counted


@dataclass
class LoadStats:
    """What loading did: rows read, examples kept, and rejected rows counted by reason."""

    read: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "rejected": dict(sorted(self.rejected.items()))}


def detect_format(row: Mapping[str, Any]) -> str:
    """The first format in :data:`FORMATS` whose columns the row has; :class:`RowError` if none fits."""
    for name in FORMATS:
        if all(c in row for c in _COLUMNS[name]):
            return name
    raise RowError(
        "unknown_format",
        f"columns {sorted(row)} fit no format; expected one of "
        + "; ".join(f"{n}: {', '.join(c)}" for n, c in _COLUMNS.items()),
    )


def row_to_example(
    row: Mapping[str, Any],
    index: int,
    *,
    format: str = "auto",
    seed: int = 0,
    shuffle: bool = True,
    score_range: tuple[int, int] | None = None,
) -> Example:
    """Turn one row into an Example (responses shuffled with a generator seeded by ``seed`` and ``index``).

    ``score_range`` is the template's: one-response examples need an integer truth inside it, since the rule
    asks the score to equal the truth. Raises :class:`RowError` with a reason for rows that cannot be used.
    """
    name = detect_format(row) if format == "auto" else format
    if name not in _COLUMNS:
        raise ValueError(f"unknown data format {format!r}; expected 'auto' or one of {', '.join(FORMATS)}")
    missing = [c for c in _COLUMNS[name] if c not in row]
    if missing:
        raise RowError("missing_column", f"format {name!r} needs column(s) {missing}; the row has {sorted(row)}")
    query_column = "query" if "query" in row else "prompt"
    query = row.get(query_column)
    truth: list[float] | None = None
    if name == "pairs":
        query, responses, truth = _pair(row, query)
    else:
        responses = row["responses"] if name != "labelled" else [row["response"]]
    if query is None:
        raise RowError("missing_column", f"no 'query' or 'prompt' column; the row has {sorted(row)}")
    try:
        messages = normalize_query(query)
        responses = normalize_responses(responses)
    except (TypeError, ValueError) as e:
        raise RowError("invalid_row", str(e)) from e
    if truth is None:
        truth = _truth(name, row, len(responses))
    _check_truth(responses, truth, score_range)
    if shuffle:
        order = list(range(len(responses)))
        seeded_rng(seed, index).shuffle(order)  # the stream of random.Random(f"{seed}:{index}")
        responses, truth = [responses[i] for i in order], [truth[i] for i in order]
    return Example(
        query=query if isinstance(query, str) else messages,
        responses=responses,
        truth=truth,
        id=str(row["id"]) if row.get("id") is not None else str(index),
        principles=row.get("principles"),
        reference=row.get("reference"),
    )


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError("invalid_row", f"{what} must be a number, got {value!r:.40}")
    return float(value)


def _truth(name: str, row: Mapping[str, Any], n: int) -> list[float]:
    if name == "labelled":
        label = row["label"]
        if isinstance(label, str) and label.strip().lower() in _LABELS:
            return [_LABELS[label.strip().lower()]]
        if isinstance(label, bool) or label in (0, 1):
            return [float(label)]
        raise RowError("invalid_label", f"label must be true/false, 1/0 or 'correct'/'incorrect', got {label!r:.40}")
    if name == "best_of_n":
        best = row["best"]
        if isinstance(best, bool) or not isinstance(best, int) or not 0 <= best < n:
            raise RowError("best_out_of_range", f"best must be an index into the {n} responses, got {best!r:.40}")
        return [1.0 if i == best else 0.0 for i in range(n)]
    values = row["truth" if name == "examples" else "ratings"]
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise RowError("invalid_row", f"ratings must be a list of numbers, got {values!r:.40}")
    if len(values) != n:
        raise RowError("length_mismatch", f"{len(values)} ratings for {n} responses")
    return [_number(v, "a rating") for v in values]


def _pair(row: Mapping[str, Any], query: Any) -> tuple[Any, list[str], list[float]]:
    query, responses = answers([(c, row[c]) for c in ("chosen", "rejected")], query)
    return query, responses, [1.0, 0.0]


def _check_truth(responses: list[str], truth: list[float], score_range: tuple[int, int] | None) -> None:
    if len(truth) != len(responses):
        raise RowError("length_mismatch", f"{len(truth)} truth values for {len(responses)} responses")
    if len(truth) == 1:
        t = truth[0]
        if score_range is not None and not (t == int(t) and score_range[0] <= t <= score_range[1]):
            raise RowError(
                "rating_outside_score_range",
                f"a one-response example needs an integer truth in {list(score_range)} (the template's scores), "
                f"got {t:g}; for correct/incorrect labels use the 'correctness' template",
            )
        return
    top = max(truth)
    winners = [i for i, t in enumerate(truth) if t == top]
    if len(winners) > 1:
        raise RowError("no_unique_best", f"responses {winners} tie for best at {top:g}")
    best = responses[winners[0]]
    if any(r == best for i, r in enumerate(responses) if i != winners[0]):
        raise RowError("identical_responses", "the best response's text is also given for a worse response")


def read_source(source: str | Path | Iterable[Mapping[str, Any]], split: str = "train") -> Iterator[Any]:
    """Rows of a data source: a file, folder or hub dataset read as a :class:`grm.sources.Source` (``split`` of a
    folder or hub dataset; a row that cannot be read gives a :class:`RowError` in its place), or any iterable of
    mappings (a ``datasets.Dataset``, a list)."""
    if not isinstance(source, str | Path):
        yield from source
        return
    for record in Source(source, split=split, streaming=False):
        yield record.row if record.row is not None else RowError("malformed_line", str(record.error))


def iter_examples(
    source: str | Path | Iterable[Mapping[str, Any]],
    *,
    format: str = "auto",
    seed: int = 0,
    shuffle: bool = True,
    score_range: tuple[int, int] | None = None,
    split: str = "train",
    stats: LoadStats | None = None,
) -> Iterator[Example]:
    """Stream the usable examples of ``source`` (see :func:`read_source`), counting into ``stats`` as it goes.

    Options as in :func:`row_to_example`. The first few rejections of each reason are logged as warnings.
    """
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"unknown data format {format!r}; expected 'auto' or one of {', '.join(FORMATS)}")
    stats = stats if stats is not None else LoadStats()
    for index, row in enumerate(read_source(source, split)):
        stats.read += 1
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, Mapping):
                raise RowError("invalid_row", f"expected a mapping, got {type(row).__name__}")
            example = row_to_example(row, index, format=format, seed=seed, shuffle=shuffle, score_range=score_range)
        except RowError as e:
            stats.rejected[e.reason] += 1
            if stats.rejected[e.reason] <= _WARN_PER_REASON:
                logger.warning("row %d skipped (%s): %s", index, e.reason, e)
            continue
        stats.kept += 1
        yield example
    if stats.rejected:
        logger.info("loaded %d of %d rows; skipped %s", stats.kept, stats.read, dict(stats.rejected))


def load_examples(source: str | Path | Iterable[Mapping[str, Any]], **kwargs: Any) -> tuple[list[Example], LoadStats]:
    """All usable examples of ``source`` and the loading statistics (options as in :func:`iter_examples`)."""
    stats = LoadStats()
    examples = list(iter_examples(source, stats=stats, **kwargs))
    return examples, stats
