"""Compute-optimal test-time scaling: choose the search strategy and budget per problem from its difficulty.

Which search works best depends on the policy, the verifier and how hard the problem is (Snell et al., 2024,
"Scaling LLM Test-Time Compute Optimally"). Difficulty is estimated cheaply from a few policy samples: one
minus their mean verifier score (with an outcome checker as the verifier: one minus the pass rate). A
calibration set, binned into levels by that estimate, tells which strategy is most accurate within a token
budget at each level; the fitted table is saved as JSON and reused.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grm.search.options import SearchOptions, resolve_search_options
from grm.search.policy import Policy
from grm.search.strategies import SearchResult, Strategy
from grm.search.verifiers import Verifier, verify_batch

logger = logging.getLogger(__name__)

FORMAT = "grm-compute-optimal/1"
ALLOCATIONS = ("level", "mean")


@dataclass
class Probe:
    """A problem's estimated difficulty (higher is harder) and the tokens spent estimating it."""

    difficulty: float
    policy_tokens: int
    verifier_tokens: int


def probe(policy: Policy, problems: Sequence[str], verifier: Verifier, n_probe: int) -> list[Probe]:
    """Estimate each problem's difficulty from ``n_probe`` whole solutions: one minus their mean verifier score
    (failed completions count as score 0). One policy call and one verifier call for all problems."""
    if n_probe < 1:
        raise ValueError(f"n_probe must be >= 1, got {n_probe}")
    outputs = policy.sample([(p, "", n_probe) for p in problems], step=False)
    texts = [[c.text for c in comps if c.error is None] for comps in outputs]
    rated = verify_batch(verifier, list(zip(problems, texts)))
    return [
        Probe(1.0 - sum(v.scores) / n_probe, sum(c.n_tokens or 0 for c in comps), v.n_tokens)
        for comps, v in zip(outputs, rated)
    ]


def level_edges(difficulties: Sequence[float], n_levels: int) -> list[float]:
    """Edges splitting ``difficulties`` into at most ``n_levels`` levels of near-equal counts.

    Each edge lies halfway between two neighbouring distinct sorted values, at the free such split nearest to
    the equal-count position: a run of equal values is never split, and every level holds at least one value.
    There are fewer levels only when there are fewer distinct values.
    """
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    d = sorted(difficulties)
    free = [j for j in range(1, len(d)) if d[j - 1] < d[j]]
    cuts = []
    for i in range(1, n_levels):
        if not free:
            break
        target = i * len(d) / n_levels
        j = min(free, key=lambda j: (abs(j - target), j))
        free.remove(j)
        cuts.append(j)
    return [(d[j - 1] + d[j]) / 2 for j in sorted(cuts)]


@dataclass
class ComputeOptimal:
    """A fitted table: difficulty level -> :class:`Strategy`.

    ``edges`` split the difficulty estimate into ``len(edges) + 1`` levels (level 0 easiest); ``table[level]``
    is the strategy to run there; ``stats[level]`` holds, per candidate strategy label, the calibration
    ``accuracy``, mean ``tokens`` (policy + verifier, without the probe) and problem count ``n``. ``max_tokens``
    and ``allocate`` record the budget the table was fitted for (see :meth:`from_outcomes`); ``seed`` the seed
    its calibration searched with (None when fitted from outcomes given).
    """

    edges: list[float]
    table: list[Strategy]
    n_probe: int = 4
    max_tokens: float | None = None
    stats: list[dict[str, dict[str, float]]] = field(default_factory=list)
    allocate: str = "level"
    seed: int | None = None

    def __post_init__(self) -> None:
        if len(self.table) != len(self.edges) + 1:
            raise ValueError(f"need one strategy per level: {len(self.edges) + 1} levels, got {len(self.table)}")
        if list(self.edges) != sorted(self.edges):
            raise ValueError(f"edges must be ascending, got {self.edges}")
        if self.allocate not in ALLOCATIONS:
            raise ValueError(f"unknown allocate {self.allocate!r}; expected one of {', '.join(ALLOCATIONS)}")

    def level(self, difficulty: float) -> int:
        """The level of a difficulty estimate (0 = easiest)."""
        return bisect.bisect_right(self.edges, difficulty)

    @classmethod
    def from_outcomes(
        cls,
        strategies: Sequence[Strategy],
        difficulties: Sequence[float],
        correct: Sequence[Sequence[bool]],
        tokens: Sequence[Sequence[float]],
        *,
        n_levels: int = 3,
        max_tokens: float | None = None,
        allocate: str = "level",
        n_probe: int = 4,
    ) -> ComputeOptimal:
        """Fit the table from calibration outcomes: ``correct[s][p]`` and ``tokens[s][p]`` of strategy ``s`` on
        problem ``p``.

        ``allocate="level"`` (the paper's rule): at each level, the most accurate strategy whose mean tokens
        there stay within ``max_tokens`` (fewer tokens break ties, then the order given; if none fits, the
        cheapest). ``allocate="mean"``: the strategies, one per level, that get the most calibration problems
        right while the mean tokens over *all* of them stay within ``max_tokens``, so easy levels can spend less
        and hard ones more (searched exactly over each level's accuracy/tokens Pareto front).
        """
        if allocate not in ALLOCATIONS:
            raise ValueError(f"unknown allocate {allocate!r}; expected one of {', '.join(ALLOCATIONS)}")
        if not strategies:
            raise ValueError("give at least one strategy to choose from")
        n = len(difficulties)
        if n == 0:
            raise ValueError("the calibration set is empty")
        if len(correct) != len(strategies) or len(tokens) != len(strategies):
            raise ValueError(f"need outcomes for each of the {len(strategies)} strategies")
        if any(len(c) != n for c in correct) or any(len(t) != n for t in tokens):
            raise ValueError(f"each strategy needs one outcome per calibration problem ({n})")
        edges = level_edges(difficulties, n_levels)
        members: list[list[int]] = [[] for _ in range(len(edges) + 1)]
        for p, d in enumerate(difficulties):
            members[bisect.bisect_right(edges, d)].append(p)
        acc = [[sum(c[p] for p in ps) / len(ps) for c in correct] for ps in members]
        tok = [[sum(t[p] for p in ps) / len(ps) for t in tokens] for ps in members]
        stats = [
            {s.label: {"accuracy": a[i], "tokens": t[i], "n": len(ps)} for i, s in enumerate(strategies)}
            for a, t, ps in zip(acc, tok, members)
        ]
        if allocate == "mean" and max_tokens is not None:
            chosen = _allocate_mean(acc, tok, [len(ps) for ps in members], max_tokens)
        else:
            chosen = [_best_within(a, t, max_tokens, level) for level, (a, t) in enumerate(zip(acc, tok))]
        return cls(edges, [strategies[i] for i in chosen], n_probe, max_tokens, stats, allocate)

    @classmethod
    def fit(
        cls,
        policy: Policy,
        problems: Sequence[str],
        check: Verifier,
        verifier: Verifier,
        strategies: Sequence[Strategy],
        options: SearchOptions | None = None,
        *,
        n_levels: int = 3,
        max_tokens: float | None = None,
        allocate: str = "level",
        n_probe: int = 4,
        difficulty_verifier: Verifier | None = None,
        **overrides: Any,
    ) -> ComputeOptimal:
        """Probe the difficulty of each calibration problem, run every strategy on all of them (see
        :func:`calibrate`; ``options`` a :class:`SearchOptions` or its fields as keywords), and fit the table
        (see :meth:`from_outcomes`)."""
        cal = calibrate(
            policy,
            problems,
            check,
            verifier,
            strategies,
            options,
            n_probe=n_probe,
            difficulty_verifier=difficulty_verifier,
            **overrides,
        )
        return cal.fit(n_levels=n_levels, max_tokens=max_tokens, allocate=allocate)

    def run(
        self,
        policy: Policy,
        problems: Sequence[str],
        verifier: Verifier,
        options: SearchOptions | None = None,
        *,
        difficulty_verifier: Verifier | None = None,
        **overrides: Any,
    ) -> list[SearchResult]:
        """Probe each problem's difficulty, then run its level's strategy (problems sharing a strategy are run
        together, all with ``options``: a :class:`SearchOptions` or its fields as keywords). The probe's tokens
        are added to each result's counts."""
        options = resolve_search_options(options, overrides)
        problems = list(problems)
        probes = probe(policy, problems, difficulty_verifier or verifier, self.n_probe)
        levels = [self.level(p.difficulty) for p in probes]
        results: list[SearchResult | None] = [None] * len(problems)
        for strategy in dict.fromkeys(self.table):
            ids = [i for i, lv in enumerate(levels) if self.table[lv] == strategy]
            if not ids:
                continue
            batch = [problems[i] for i in ids]
            for i, r in zip(ids, strategy.run(policy, batch, verifier, options)):
                r.policy_tokens += probes[i].policy_tokens
                r.verifier_tokens += probes[i].verifier_tokens
                r.level, r.difficulty = levels[i], probes[i].difficulty
                results[i] = r
        return results  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "n_probe": self.n_probe,
            "max_tokens": self.max_tokens,
            "allocate": self.allocate,
            "edges": list(self.edges),
            "table": [s.to_dict() for s in self.table],
            "stats": self.stats,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComputeOptimal:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a compute-optimal table: format {d.get('format')!r}, expected {FORMAT!r}")
        table = [Strategy.from_dict(s) for s in d["table"]]
        return cls(
            list(d["edges"]), table, d["n_probe"], d.get("max_tokens"), d.get("stats", []), d["allocate"], d.get("seed")
        )

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ComputeOptimal:
        """Read a table written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass
class Calibration:
    """Outcomes of ``strategies`` on calibration problems: each problem's probed ``difficulties`` and, per
    strategy and problem, whether its pick was ``correct`` and the ``tokens`` it generated; ``seed``, the seed the
    searches ran with."""

    strategies: list[Strategy]
    difficulties: list[float]
    correct: list[list[bool]]
    tokens: list[list[int]]
    n_probe: int
    seed: int | None = None

    def fit(self, *, n_levels: int = 3, max_tokens: float | None = None, allocate: str = "level") -> ComputeOptimal:
        """The table for this budget (see :meth:`ComputeOptimal.from_outcomes`); refit at will, nothing reruns."""
        table = ComputeOptimal.from_outcomes(
            self.strategies,
            self.difficulties,
            self.correct,
            self.tokens,
            n_levels=n_levels,
            max_tokens=max_tokens,
            allocate=allocate,
            n_probe=self.n_probe,
        )
        table.seed = self.seed
        return table


def calibrate(
    policy: Policy,
    problems: Sequence[str],
    check: Verifier,
    verifier: Verifier,
    strategies: Sequence[Strategy],
    options: SearchOptions | None = None,
    *,
    n_probe: int = 4,
    difficulty_verifier: Verifier | None = None,
    **overrides: Any,
) -> Calibration:
    """Probe each calibration problem's difficulty and run every strategy on all of them.

    ``check`` rates a chosen solution as correct (score >= 0.5), e.g. an :class:`AnswerChecker` with the
    reference answers; ``verifier`` steers the searches, run with ``options`` (a :class:`SearchOptions`, or its
    fields as keywords); ``difficulty_verifier`` (default: ``verifier``) rates the probes and must be the one
    later used by :meth:`ComputeOptimal.run` too.
    """
    options = resolve_search_options(options, overrides)
    problems = list(problems)
    probes = probe(policy, problems, difficulty_verifier or verifier, n_probe)
    correct, tokens = [], []
    for strategy in strategies:
        logger.info("calibrating %s on %d problems", strategy.label, len(problems))
        results = strategy.run(policy, problems, verifier, options)
        correct.append(check_results(check, results))
        tokens.append([r.tokens for r in results])
    return Calibration(list(strategies), [p.difficulty for p in probes], correct, tokens, n_probe, options.seed)


def check_results(check: Verifier, results: Sequence[SearchResult]) -> list[bool]:
    """Whether each result's chosen solution passes ``check`` (score >= 0.5); no solution is wrong."""
    chosen = [i for i, r in enumerate(results) if r.text is not None]
    rated = verify_batch(check, [(results[i].problem, [results[i].text]) for i in chosen])  # type: ignore[list-item]
    out = [False] * len(results)
    for i, v in zip(chosen, rated):
        out[i] = v.scores[0] >= 0.5
    return out


def _best_within(acc: list[float], tok: list[float], max_tokens: float | None, level: int) -> int:
    """The most accurate strategy within ``max_tokens`` (then fewer tokens, then first); else the cheapest."""
    order = range(len(acc))
    feasible = [s for s in order if max_tokens is None or tok[s] <= max_tokens]
    if feasible:
        return min(feasible, key=lambda s: (-acc[s], tok[s], s))
    logger.warning("level %d: no strategy within %s tokens; using the cheapest", level, max_tokens)
    return min(order, key=lambda s: (tok[s], s))


def _allocate_mean(acc: list[list[float]], tok: list[list[float]], counts: list[int], max_tokens: float) -> list[int]:
    """One strategy per level maximizing the number of problems right with mean tokens within ``max_tokens``.

    Only strategies on a level's Pareto front (no other is as cheap and at least as accurate) can be part of
    the best choice, so every combination of front members is tried. Ties: fewer tokens, then earlier.
    """
    fronts = []
    for a, t in zip(acc, tok):
        front, top = [], -1.0
        for s in sorted(range(len(a)), key=lambda s: (t[s], -a[s], s)):
            if a[s] > top:
                front.append(s)
                top = a[s]
        fronts.append(front)
    if math.prod(map(len, fronts)) > 10**6:
        raise ValueError(f"too many combinations ({math.prod(map(len, fronts))}); use fewer levels or strategies")
    limit = max_tokens * sum(counts)
    best: tuple[tuple[float, float], tuple[int, ...]] | None = None
    for combo in itertools.product(*fronts):
        cost = sum(c * tok[lv][s] for lv, (s, c) in enumerate(zip(combo, counts)))
        if cost <= limit * (1 + 1e-12):
            key = (-sum(c * acc[lv][s] for lv, (s, c) in enumerate(zip(combo, counts))), cost)
            if best is None or key < best[0]:
                best = (key, combo)
    if best is None:
        logger.warning("no choice of strategies keeps the mean within %s tokens; using the cheapest", max_tokens)
        return [front[0] for front in fronts]
    return list(best[1])
