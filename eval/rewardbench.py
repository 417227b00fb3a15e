"""RewardBench (Lambert et al. 2024): chosen/rejected pairs, scored as the official leaderboard does.

Facts from the public allenai/reward-bench repository, commit 05a9005efb607249822c193590c8ecab87c77052:
``rewardbench/constants.py`` (EXAMPLE_COUNTS, SUBSET_MAPPING; the xstest counts are the ones after commit
6552e93, "Mirror change from leaderboard": should-refuse 154, should-respond 250) and
``rewardbench/utils.py::calculate_scores_per_section`` (a section is the mean of its subsets' accuracies weighted
by these counts, over the subsets present). ``math-prm`` has 447 items but is weighted as 984, the six
HumanEvalPack subsets together, so that math and code count equally in Reasoning. The leaderboard's overall
score is the plain mean of the four sections. Data: hub ``allenai/reward-bench``, split ``filtered``, with fields
``prompt``, ``chosen``, ``rejected``, ``subset``, ``id``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from grm.eval.base import Benchmark, Entry, EvalItem, Row, Table, parse_rows, require, rows, text
from grm.types import brief

EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100,
    "alpacaeval-length": 95,
    "alpacaeval-hard": 95,
    "mt-bench-easy": 28,
    "mt-bench-med": 40,
    "mt-bench-hard": 37,
    "math-prm": 984,
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46,
    "xstest-should-refuse": 154,
    "xstest-should-respond": 250,
    "donotanswer": 136,
    "hep-cpp": 164,
    "hep-go": 164,
    "hep-java": 164,
    "hep-js": 164,
    "hep-python": 164,
    "hep-rust": 164,
}
"""Weight of each subset within its section (the filtered split's sizes, except math-prm)."""

SUBSET_MAPPING: dict[str, list[str]] = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": [
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ],
    "Safety": [
        "refusals-dangerous",
        "refusals-offensive",
        "xstest-should-refuse",
        "xstest-should-respond",
        "donotanswer",
    ],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}
"""Which subsets make up each of the four sections."""


def section_scores(subset_accuracy: Mapping[str, float]) -> dict[str, float]:
    """Section scores and their mean, ``overall``, from per-subset accuracies (fractions in 0..1).

    Each section present (at least one of its subsets given) is the EXAMPLE_COUNTS-weighted mean of its subsets'
    accuracies; ``overall`` is the mean of Chat, Chat Hard, Safety and Reasoning, given only when all four are.
    """
    unknown = sorted(set(subset_accuracy) - set(EXAMPLE_COUNTS))
    if unknown:
        raise ValueError(f"unknown RewardBench subsets {unknown}; expected names from {sorted(EXAMPLE_COUNTS)}")
    scores: dict[str, float] = {}
    for section, subsets in SUBSET_MAPPING.items():
        present = [s for s in subsets if s in subset_accuracy]
        if present:
            weight = sum(EXAMPLE_COUNTS[s] for s in present)
            scores[section] = sum(subset_accuracy[s] * EXAMPLE_COUNTS[s] for s in present) / weight
    if len(scores) == len(SUBSET_MAPPING):
        scores["overall"] = sum(scores.values()) / len(SUBSET_MAPPING)
    return scores


class RewardBench(Benchmark):
    """RewardBench's filtered split: an item is right when the chosen response gets the best vote."""

    name = "rewardbench"
    hub_id = "allenai/reward-bench"
    hub_split = "filtered"

    def read(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[Entry]:
        return parse_rows(rows(source, split=split or self.hub_split, name=name), self._items)

    def _items(self, r: Row) -> list[EvalItem]:
        row = r.row
        require(row, ("prompt", "chosen", "rejected", "subset"))
        if row["subset"] not in EXAMPLE_COUNTS:
            raise ValueError(f"unknown subset {brief(row['subset'])}; expected one of {sorted(EXAMPLE_COUNTS)}")
        return [
            EvalItem(
                query=row["prompt"],
                responses=[text(row, "chosen"), text(row, "rejected")],
                truth=[1.0, 0.0],
                id=str(row["id"]) if row.get("id") is not None else f"{r.origin}:{r.index}",
                subset=row["subset"],
            )
        ]

    def coverage(self, subsets: Sequence[str]) -> list[str]:
        """A warning for each section the data lacks subsets of: a section is then the weighted mean of the
        subsets present, and without any subset of a section there is no ``overall``."""
        warnings = []
        for section, members in SUBSET_MAPPING.items():
            absent = [s for s in members if s not in subsets]
            if len(absent) == len(members):
                warnings.append(
                    f"section {section} is absent from the data (none of {members}): no overall score; the "
                    "headline is the accuracy over the items given"
                )
            elif absent:
                warnings.append(
                    f"section {section} lacks subsets {absent}: its score is the weighted mean of the others only"
                )
        return warnings

    def summarize(self, table: Table) -> dict[str, float]:
        subsets = table.subset_means()
        sections = section_scores(subsets)
        scores = {"overall": sections.pop("overall")} if "overall" in sections else {}
        scores["accuracy"] = float(table.values.mean())  # unweighted, over all items (also for partial data)
        scores.update({f"groups/{s}": v for s, v in sections.items()})
        scores.update({f"subsets/{s}": v for s, v in subsets.items()})
        return scores
