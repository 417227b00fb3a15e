"""RM-Bench (Liu et al., ICLR 2025): three chosen x three rejected style variants per prompt, the 3x3 matrix.

Rules from the public THU-KEG/RM-Bench repository, commit 73c52d7b27b361621361ec959ac6c0eb9bb7a689,
``scripts/utils.py::compute_accuracy``: the responses of each side are in the order concise, detailed plain text,
detailed markdown; cell (i, j) of the matrix is the fraction of prompts whose chosen response i scores strictly
higher than rejected response j (a tie counts as wrong). ``hard`` is the mean of the cells above the diagonal
(the chosen one in a plainer style than the rejected one), ``normal`` of the diagonal, ``easy`` of the cells below.
Per domain (``split_dataset_by_domain``: a row's ``domain`` starting with chat, code, math or safety, so
safety-refuse and safety-response together) the score is the mean of hard, normal and easy; ``overall`` (the
script's ``total_avg_acc``, and the README's "Overall = (Chat + Code + Math + Safety) / 4") is the mean of the four
domains, and hard / normal / easy overall are their means over the domains.

Data: hub ``THU-KEG/RM-Bench`` or the repository's ``data/total_dataset.json`` (rows ``id``, ``prompt``,
``chosen`` [3], ``rejected`` [3], ``domain``); its per-domain files (``data/chat_filtered.json`` ...) carry no
``domain``, which is then read from the file name. Ids repeat across domains, so items are keyed
``<domain>/<id>``. A GRM judges the six responses of a prompt together (shuffled as usual); the matrix is read
off their voted mean scores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from grm.eval.base import Benchmark, Entry, EvalItem, Row, Table, parse_rows, require, rows, text, texts
from grm.types import brief
from grm.voting import Vote

DOMAINS = {"chat": "Chat", "code": "Code", "math": "Math", "safety": "Safety"}
"""Domain prefixes and the names their scores go by."""
STYLES = ("concise", "detailed plain", "detailed markdown")
LEVELS = ("hard", "normal", "easy")
_SIZE = len(STYLES)
_UPPER, _LOWER = np.triu(np.ones((_SIZE, _SIZE), bool), 1), np.tril(np.ones((_SIZE, _SIZE), bool), -1)


def domain_of(subset: str) -> str:
    """``safety-refuse`` -> ``Safety``: the domain a row's ``domain`` field belongs to (by prefix)."""
    for prefix, domain in DOMAINS.items():
        if subset.startswith(prefix):
            return domain
    raise ValueError(f"domain {subset!r}: expected one starting with {', '.join(DOMAINS)}")


def matrix_levels(chosen: Sequence[float], rejected: Sequence[float]) -> tuple[float, float, float]:
    """Hard, normal and easy accuracy of one prompt's 3x3 matrix (chosen i strictly above rejected j)."""
    wins = np.asarray(chosen, dtype=float)[:, None] > np.asarray(rejected, dtype=float)[None, :]
    return float(wins[_UPPER].mean()), float(np.diag(wins).mean()), float(wins[_LOWER].mean())


class RMBench(Benchmark):
    """RM-Bench: hard / normal / easy accuracy from the 3x3 style matrix, per domain and overall.

    ``value`` gives four numbers per item: the mean of its nine cells, then hard, normal and easy.
    """

    name = "rmbench"
    hub_id = "THU-KEG/RM-Bench"
    width = 4

    def read(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[Entry]:
        return parse_rows(rows(source, split=split or self.hub_split, name=name), self._items)

    def _items(self, r: Row) -> list[EvalItem]:
        row = r.row
        require(row, ("id", "prompt", "chosen", "rejected"))
        domain = row.get("domain")
        if domain is not None and not isinstance(domain, str):
            raise ValueError(f"domain must be a string, got {type(domain).__name__} {brief(domain)}")
        subset = domain or _domain_from_file(r.origin)
        if subset is None:
            raise ValueError("no 'domain' field, and the file name does not name one (chat_*.json ...)")
        domain_of(subset)
        responses = texts(row, "chosen", _SIZE) + texts(row, "rejected", _SIZE)
        return [
            EvalItem(
                query=text(row, "prompt"),
                responses=responses,
                truth=[1.0] * _SIZE + [0.0] * _SIZE,
                id=f"{subset}/{row['id']}",
                subset=subset,
            )
        ]

    def value(self, vote: Vote, truth: Sequence[float]) -> tuple[float, float, float, float]:
        scores = vote.mean if vote.mean is not None else [0.0] * len(truth)  # unreadable: all tied, all wrong
        levels = matrix_levels(scores[:_SIZE], scores[_SIZE:])
        return (sum(levels) / len(levels), *levels)

    def coverage(self, subsets: Sequence[str]) -> list[str]:
        absent = sorted(set(DOMAINS.values()) - {domain_of(s) for s in subsets})
        if not absent:
            return []
        return [f"domains {absent} are absent from the data: no overall score (the mean of the four domains)"]

    def summarize(self, table: Table) -> dict[str, float]:
        domain_names = list(DOMAINS.values())
        domain_codes = np.array([domain_names.index(domain_of(s)) for s in table.subsets])[table.codes]
        counts = np.bincount(domain_codes, minlength=len(domain_names))
        present = [d for d, c in zip(domain_names, counts) if c]
        per_level = {
            level: {
                d: float(np.bincount(domain_codes, table.values[:, 1 + i], len(domain_names))[c] / counts[c])
                for c, d in enumerate(domain_names)
                if counts[c]
            }
            for i, level in enumerate(LEVELS)
        }
        domains = {d: sum(per_level[level][d] for level in LEVELS) / len(LEVELS) for d in present}
        scores = {"overall": sum(domains.values()) / len(domains)} if len(domains) == len(DOMAINS) else {}
        scores["accuracy"] = float(table.values[:, 0].mean())  # over all items (the headline on partial data)
        scores.update({level: sum(by_domain.values()) / len(by_domain) for level, by_domain in per_level.items()})
        for d in present:
            scores[f"groups/{d}"] = domains[d]
            scores.update({f"groups/{d} {level}": per_level[level][d] for level in LEVELS})
        scores.update({f"subsets/{s}": v for s, v in table.subset_means().items()})
        return scores


def _domain_from_file(origin: str) -> str | None:
    """``data/safety-refuse_filtered.json`` -> ``safety-refuse``; None when the name starts with no domain."""
    stem = Path(origin.split(":")[0]).name.split("_")[0].split(".")[0]
    return stem if any(stem.startswith(prefix) for prefix in DOMAINS) else None
