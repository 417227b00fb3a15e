"""JudgeBench (Tan et al., ICLR 2025): hard response pairs, each judged in both orders.

Rule from the public ScalerLab/JudgeBench repository, commit e2c52c284e735e139b3daa61c206ee208f36c461,
``utils/metrics.py::compute_final_metrics`` (with ``reverse_order``, ``run_judge.py``'s default): a pair is judged
as given (A, B) and swapped (B, A); each order's decision, mapped back to A/B, counts +1 when it agrees with the
label, -1 when it is the opposite, 0 otherwise (a tie, or no decision); the pair is right when the sum is > 0, and a
score is the share of right pairs (micro-averaged). ``run_judge.py::main`` reports the sources starting with
``mmlu-pro``, ``livebench-reasoning``, ``livebench-math``, ``livecodebench``, and all pairs (``overall``).

Data: hub ``ScalerLab/JudgeBench``, splits ``gpt`` (responses by GPT-4o) and ``claude`` (by Claude 3.5 Sonnet), or
the repository's ``data/dataset=judgebench,response_model=*.jsonl``; fields ``pair_id``, ``original_id``,
``source``, ``question``, ``response_model``, ``response_A``, ``response_B``, ``label`` (``A>B`` or ``B>A``).
Each pair becomes two items, ``<pair_id>:AB`` and ``<pair_id>:BA``, scored with shuffling off (the order is the
point); an order's decision is the response scored strictly higher.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from grm.eval.base import Benchmark, Entry, EvalItem, Row, Table, parse_rows, require, rows
from grm.types import brief
from grm.voting import Vote

FAMILIES = ("mmlu-pro", "livebench-reasoning", "livebench-math", "livecodebench")
"""The source families JudgeBench reports (by prefix of ``source``)."""
ORDERS = ("AB", "BA")
_LABELS = {"A>B": [1.0, 0.0], "B>A": [0.0, 1.0]}


def family_of(source: str) -> str:
    """``mmlu-pro-law`` -> ``mmlu-pro``; a source of no known family is its own."""
    return next((f for f in FAMILIES if source.startswith(f)), source)


class JudgeBench(Benchmark):
    """JudgeBench: a pair is right when its two orders' votes (+1 right, -1 wrong, 0 tie) sum to more than 0."""

    name = "judgebench"
    hub_id = "ScalerLab/JudgeBench"
    hub_split = "gpt"
    fixed_order = True

    def read(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[Entry]:
        return parse_rows(rows(source, split=split or self.hub_split, name=name), self._items)

    def _items(self, r: Row) -> list[EvalItem]:
        row = r.row
        require(row, ("pair_id", "source", "question", "response_A", "response_B", "label"))
        truth = _LABELS.get(row["label"]) if isinstance(row["label"], str) else None
        if truth is None:
            raise ValueError(f"label {brief(row['label'])}; expected 'A>B' or 'B>A'")
        if not all(isinstance(row[f], str) for f in ("question", "response_A", "response_B", "source")):
            raise ValueError("question, response_A, response_B and source must be strings")
        pair = [row["response_A"], row["response_B"]]
        return [
            EvalItem(
                query=row["question"],
                responses=pair[::-1] if order == "BA" else pair,
                truth=truth[::-1] if order == "BA" else truth,
                id=f"{row['pair_id']}:{order}",
                subset=row["source"],
            )
            for order in ORDERS
        ]

    def value(self, vote: Vote, truth: Sequence[float]) -> float:
        """+1 when the label's better response scores strictly higher, -1 when strictly lower, 0 on a tie or
        when no judgement could be read."""
        if len(truth) != 2:
            raise ValueError(f"{self.name}: an item is a pair, got {len(truth)} responses")
        if vote.mean is None:
            return 0.0
        better = 0 if truth[0] > truth[1] else 1
        return float(np.sign(vote.mean[better] - vote.mean[1 - better]))

    def unit(self, item_id: str) -> str:
        """Both orders of a pair form one unit."""
        pair, _, order = item_id.rpartition(":")
        return pair if order in ORDERS else item_id

    def summarize(self, table: Table) -> dict[str, float]:
        if table.units is None:
            raise ValueError("judgebench needs the items' units to pair the two orders")
        units, first = np.unique(table.units, return_index=True)
        right = np.bincount(np.searchsorted(units, table.units), weights=table.values) > 0
        sources = np.asarray(table.subsets, dtype=object)[table.codes[first]]
        families = np.array([family_of(s) for s in sources], dtype=object)
        scores = {"overall": float(right.mean())}
        for family in dict.fromkeys(sorted(families, key=_family_order)):
            scores[f"groups/{family}"] = float(right[families == family].mean())
        for source in dict.fromkeys(sources):
            scores[f"subsets/{source}"] = float(right[sources == source].mean())
        return scores


def _family_order(family: str) -> tuple[int, str]:
    return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES), family)
