"""RMB (Zhou et al., ICLR 2025): pairwise and best-of-N sets over helpfulness and harmlessness scenarios.

Reads a clone of https://github.com/Zhou-Zoey/RMB-Reward-Model-Benchmark as it is (its data has no licence, so
grm does not ship it): ``RMB_dataset/{Pairwise_set,BoN_set}/...``, one JSON array per scenario, file and
folder names with spaces. Pairwise items have ``pair_uid``, ``conversation_input``, ``chosen`` and ``reject``
(not "rejected"); best-of-N items have ``bon_uid``, ``conversation_input``, ``bon_best`` and ``loser_list``.
Answers are ``{llm_name, answer}``; conversation turns are ``{content, role}`` with an optional, unreliable
``language``. uids are strings and the two sets number them independently, so items are keyed by
``pairwise/<uid>`` and ``bon/<uid>``. Whitespace-only answers and answers identical to the chosen one occur and
are kept: an identical pair is a tie, which the random tie-break gets right half the time.

Scoring: a pairwise item is right when the chosen answer gets the best vote; a best-of-N item only when
``bon_best`` gets the best vote, i.e. beats every loser. Like the official script run on a folder, each of
Helpfulness/Harmlessness x BoN/Pairwise is the accuracy over all its items; ``overall`` is their mean.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grm.eval.base import Benchmark, Entry, EvalItem, Table, parse_rows, require, rows
from grm.sources import DatasetUnavailable
from grm.types import Message, brief, normalize_query

SETS = {"Pairwise_set": "Pairwise", "BoN_set": "BoN"}
GOALS = ("Helpfulness", "Harmlessness")
GROUPS = [f"{goal} {kind}" for goal in GOALS for kind in ("BoN", "Pairwise")]
"""The four numbers RMB reports, in the order of its tables."""


def group_of(category_path: str) -> str:
    """``Pairwise_set/Helpfulness/Code/Documentation`` -> ``Helpfulness Pairwise``."""
    parts = category_path.split("/")
    if len(parts) < 2 or parts[0] not in SETS or parts[1] not in GOALS:
        raise ValueError(
            f"category_path {category_path!r}: expected '<Pairwise_set|BoN_set>/<Helpfulness|Harmlessness>/...'"
        )
    return f"{parts[1]} {SETS[parts[0]]}"


class RMB(Benchmark):
    """RMB pairwise and best-of-N accuracy; subsets are scenarios (``category_path``)."""

    name = "rmb"

    def read(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[Entry]:
        root = Path(source)
        if not root.exists():
            raise DatasetUnavailable(
                f"{source}: no such file or folder. RMB is read from a clone of "
                "https://github.com/Zhou-Zoey/RMB-Reward-Model-Benchmark (its root, RMB_dataset/ or a folder below)"
            )
        if (root / "RMB_dataset").is_dir():
            root = root / "RMB_dataset"
        files = [root] if root.is_file() else sorted(root.rglob("*.json"), key=lambda p: p.relative_to(root).parts)
        if not files:
            raise DatasetUnavailable(f"{root}: no RMB .json files below this folder")
        for path in files:
            yield from parse_rows(rows(path), lambda r: [self._item(r.row)])

    def _item(self, row: dict[str, Any]) -> EvalItem:
        if "pair_uid" in row:
            require(row, ("pair_uid", "conversation_input", "chosen", "reject", "category_path"))
            kind, uid, answers = "pairwise", row["pair_uid"], [row["chosen"], row["reject"]]
        elif "bon_uid" in row:
            require(row, ("bon_uid", "conversation_input", "bon_best", "loser_list", "category_path"))
            if not isinstance(row["loser_list"], list) or not row["loser_list"]:
                raise ValueError(f"loser_list must be a non-empty list, got {brief(row['loser_list'])}")
            kind, uid, answers = "bon", row["bon_uid"], [row["bon_best"], *row["loser_list"]]
        else:
            raise ValueError(f"neither 'pair_uid' nor 'bon_uid'; is this an RMB file? keys {brief(sorted(row))}")
        if not isinstance(row["category_path"], str):
            raise ValueError(f"category_path must be a string, got {brief(row['category_path'])}")
        group_of(row["category_path"])
        responses = []
        for a in answers:
            if not isinstance(a, dict) or not isinstance(a.get("answer"), str):
                raise ValueError(f"expected answers as {{'llm_name', 'answer'}} objects, got {brief(a)}")
            responses.append(a["answer"])
        try:
            query = normalize_query(_conversation(row["conversation_input"]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"conversation_input: {e}") from e
        return EvalItem(
            query=query,
            responses=responses,
            truth=[1.0] + [0.0] * (len(responses) - 1),
            id=f"{kind}/{uid}",
            subset=row["category_path"],
        )

    def coverage(self, subsets: Sequence[str]) -> list[str]:
        absent = [g for g in GROUPS if g not in {group_of(s) for s in subsets}]
        if not absent:
            return []
        return [f"{absent} are absent from the data: no overall score (the mean of the four)"]

    def summarize(self, table: Table) -> dict[str, float]:
        group_codes = np.array([GROUPS.index(group_of(s)) for s in table.subsets])[table.codes]
        sums = np.bincount(group_codes, weights=table.values, minlength=len(GROUPS))
        counts = np.bincount(group_codes, minlength=len(GROUPS))
        groups = {g: float(sums[i] / counts[i]) for i, g in enumerate(GROUPS) if counts[i]}
        scores = {"overall": sum(groups.values()) / len(GROUPS)} if len(groups) == len(GROUPS) else {}
        scores["accuracy"] = float(table.values.mean())
        scores.update({f"groups/{g}": v for g, v in groups.items()})
        scores.update({f"subsets/{s}": v for s, v in table.subset_means().items()})
        return scores


def _conversation(turns: Any) -> list[Message]:
    """RMB turns ``{content, role, language?}`` as chat messages (``language`` is dropped)."""
    if not isinstance(turns, list):
        raise TypeError(f"expected a list of turns, got {type(turns).__name__}")
    return [{"role": t.get("role"), "content": t.get("content")} if isinstance(t, dict) else t for t in turns]
