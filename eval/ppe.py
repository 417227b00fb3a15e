"""PPE, Preference Proxy Evaluations (Frick et al. 2024): human preference pairs and best-of-K correctness.

Field names as the lmarena-ai datasets on the hub use them (read from public code that loads them; the PPE
repository itself could not be consulted here):
- ``lmarena-ai/PPE-Human-Preference-V1``, split ``test``: ``question_id``, ``prompt``, ``response_1``,
  ``response_2``, ``winner`` (``model_a`` / ``model_b``, or a tie, which has no right answer and is skipped),
  ``language``.
- ``lmarena-ai/PPE-{MMLU-Pro,MATH,GPQA,IFEval,MBPP-Plus}-Best-of-K``, split ``train``: ``question_id``,
  ``prompt``, ``response_1`` .. ``response_K``, ``scores`` (one correctness flag per response), ``model_name``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grm.eval.base import Benchmark, Entry, EvalItem, Row, Table, parse_rows, require, rows, text
from grm.sources import is_hub_id
from grm.types import brief
from grm.voting import Vote

logger = logging.getLogger(__name__)

_RESPONSE_KEY = re.compile(r"^response_(\d+)$")
_WINNERS = {"model_a": [1.0, 0.0], "model_b": [0.0, 1.0]}


class UniqueIds:
    """Gives each item a unique id: the first ``key`` as is, a repeat as ``key#2``, ``key#3`` ..."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, key: str) -> str:
        count = self.seen.get(key, 0) + 1
        self.seen[key] = count
        return key if count == 1 else f"{key}#{count}"


class PPEPreference(Benchmark):
    """PPE human preference: accuracy of picking the human-preferred response of a pair; ties are skipped."""

    name = "ppe-preference"
    hub_id = "lmarena-ai/PPE-Human-Preference-V1"
    hub_split = "test"

    def read(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[Entry]:
        unique, ties = UniqueIds(), 0

        def items(r: Row) -> list[EvalItem]:
            nonlocal ties
            row = r.row
            require(row, ("prompt", "response_1", "response_2", "winner"))
            truth = _WINNERS.get(row["winner"]) if isinstance(row["winner"], str) else None
            if truth is None:
                ties += 1
                return []
            key = str(row["question_id"]) if row.get("question_id") is not None else f"{r.origin}:{r.index}"
            return [
                EvalItem(
                    query=row["prompt"],
                    responses=[text(row, "response_1"), text(row, "response_2")],
                    truth=truth,
                    id=unique(key),
                    subset=str(row.get("language") or "unknown"),
                )
            ]

        yield from parse_rows(rows(source, split=split or self.hub_split, name=name), items)
        if ties:
            logger.info("%s: skipped %d items whose winner is neither model_a nor model_b (ties)", source, ties)


class PPECorrectness(Benchmark):
    """PPE correctness, best-of-K: an item is right when the response voted best is a correct one.

    Each source benchmark (MMLU-Pro, MATH, ...) is a subset; ``overall`` is the mean over subsets.
    """

    name = "ppe-correctness"
    hub_split = "train"  # no default hub_id: each of the five source benchmarks is its own dataset

    def read(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[Entry]:
        unique = UniqueIds()

        def items(r: Row) -> list[EvalItem]:
            row = r.row
            require(row, ("prompt", "scores"))
            responses = _responses(row)
            if len(responses) < 2:
                raise ValueError(f"best-of-K needs two or more responses, got {len(responses)}")
            flags = row["scores"]
            if isinstance(flags, str) or not isinstance(flags, list) or len(flags) != len(responses):
                raise ValueError(
                    f"scores must be a list of one flag per response ({len(responses)}), got {brief(flags)}"
                )
            subset = str(row.get("subset") or _source_name(source if is_hub_id(str(source)) else r.origin))
            key = ":".join(str(row[f]) for f in ("question_id", "model_name") if row.get(f) is not None)
            return [
                EvalItem(
                    query=row["prompt"],
                    responses=responses,
                    truth=[1.0 if s else 0.0 for s in flags],
                    id=unique(f"{subset}:{key or r.index}"),
                    subset=subset,
                )
            ]

        return parse_rows(rows(source, split=split or self.hub_split, name=name), items)

    def value(self, vote: Vote, truth: list[float]) -> float:
        return float(vote.best is not None and truth[vote.best] == 1.0)

    def summarize(self, table: Table) -> dict[str, float]:
        subsets = table.subset_means()
        scores = {"overall": sum(subsets.values()) / len(subsets), "accuracy": float(table.values.mean())}
        scores.update({f"subsets/{s}": v for s, v in subsets.items()})
        return scores


def _responses(row: dict[str, Any]) -> list[str]:
    numbered = sorted((int(m.group(1)), key) for key in row if (m := _RESPONSE_KEY.match(key)))
    if not numbered:
        raise ValueError(f"no response_1 .. response_K fields; got {brief(sorted(row))}")
    if [n for n, _ in numbered] != list(range(1, len(numbered) + 1)):
        raise ValueError(f"response fields are not numbered 1..K: {brief([k for _, k in numbered])}")
    return [text(row, key) for _, key in numbered]


def _source_name(origin: str) -> str:
    """``lmarena-ai/PPE-MATH-Best-of-K:train`` -> ``MATH``; ``math.jsonl`` or ``ppe/math.parquet`` -> ``math``."""
    stem = origin.split(":")[0].rsplit("/", 1)[-1]
    stem = Path(stem).stem if Path(stem).suffix in (".json", ".jsonl", ".parquet") else stem
    return re.sub(r"-Best-of-K$", "", re.sub(r"^PPE-", "", stem))
