"""Search over a policy with a verifier: Best-of-N, step-level beam search and DVTS.

Every function takes a batch of problems and advances them together: each round of sampling is one backend
call for all problems, each round of rating one verifier call.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from grm.progress import progress_bar
from grm.search.answers import SELECTIONS, select
from grm.search.options import SearchOptions, resolve_search_options
from grm.search.policy import Policy
from grm.search.verifiers import Verifier, verify_batch
from grm.seeding import seeded_rng

METHODS = ("best_of_n", "beam_search", "dvts")


@dataclass
class SearchResult:
    """What a search chose for one problem, and what it cost.

    ``text`` is the chosen solution and ``answer`` its extracted final answer (None when there is none).
    ``candidates`` are the finished solutions the choice was made among, with their verifier ``scores`` (None
    for a majority vote, which needs no verifier). ``policy_tokens`` and ``verifier_tokens`` count the tokens
    each model generated (including pruned candidates; a PRM generates none). ``n_failed`` counts policy
    completions that failed, ``verifier_failed`` candidates the verifier could not rate. ``level`` and
    ``difficulty`` are set by compute-optimal search. ``seed`` is the seed the search broke ties with (the one
    given, or the one drawn for an unseeded call): the same seed, policy and verifier give the same result.
    """

    problem: str
    strategy: str
    text: str | None
    answer: str | None
    candidates: list[str] = field(default_factory=list)
    scores: list[float] | None = None
    policy_tokens: int = 0
    verifier_tokens: int = 0
    n_failed: int = 0
    verifier_failed: int = 0
    level: int | None = None
    difficulty: float | None = None
    seed: int | None = None

    @property
    def tokens(self) -> int:
        """All generated tokens, policy and verifier."""
        return self.policy_tokens + self.verifier_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Strategy:
    """A search method with its budget: ``method`` (best_of_n, beam_search, dvts), ``n`` samples, the final
    ``select`` rule, and for the tree methods the expansion factor ``m`` and ``max_steps``."""

    method: str
    n: int
    select: str = "weighted"
    m: int = 4
    max_steps: int = 16

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown search method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.select not in SELECTIONS:
            raise ValueError(f"unknown selection {self.select!r}; expected one of {', '.join(SELECTIONS)}")
        if self.method != "best_of_n":
            if self.m < 1 or self.n % self.m:
                raise ValueError(
                    f"n must be a multiple of m >= 1 (keep n/m beams, extend each m times); got n={self.n}, m={self.m}"
                )
            if self.max_steps < 1:
                raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")

    @property
    def label(self) -> str:
        if self.method == "best_of_n":
            return f"best_of_n(n={self.n},{self.select})"
        return f"{self.method}(n={self.n},m={self.m},{self.select})"

    def run(
        self,
        policy: Policy,
        problems: Sequence[str],
        verifier: Verifier | None,
        options: SearchOptions | None = None,
        **overrides: Any,
    ) -> list[SearchResult]:
        """Run this strategy on ``problems`` with ``options`` (a :class:`SearchOptions`, or its fields as
        keywords)."""
        options = resolve_search_options(options, overrides)
        if isinstance(problems, str):
            raise TypeError("problems must be a list of strings; wrap a single problem in a list")
        problems = list(problems)
        if verifier is None and (self.method, self.select) != ("best_of_n", "majority"):
            raise ValueError(f"{self.label} needs a verifier; only best_of_n with select='majority' works without one")
        search = _best_of_n if self.method == "best_of_n" else _tree_search
        results = search(self, policy, problems, verifier, options)
        for r in results:
            r.seed = options.seed
        return results

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Strategy:
        unknown = set(d) - {"method", "n", "select", "m", "max_steps"}
        if unknown:
            raise ValueError(f"unknown strategy keys {sorted(unknown)}; expected method, n, select, m, max_steps")
        return cls(**d)


def best_of_n(
    policy: Policy,
    problems: Sequence[str],
    verifier: Verifier | None = None,
    options: SearchOptions | None = None,
    *,
    n: int,
    select: str = "weighted",
    **overrides: Any,
) -> list[SearchResult]:
    """Sample ``n`` whole solutions per problem and pick one by ``select``: ``max`` (highest verifier score),
    ``majority`` (most frequent answer; no verifier needed) or ``weighted`` (highest sum of scores per answer).
    ``options``: a :class:`SearchOptions`, or its fields as keywords."""
    return Strategy("best_of_n", n, select).run(policy, problems, verifier, options, **overrides)


def beam_search(
    policy: Policy,
    problems: Sequence[str],
    verifier: Verifier,
    options: SearchOptions | None = None,
    *,
    n: int,
    m: int = 4,
    max_steps: int = 16,
    select: str = "weighted",
    **overrides: Any,
) -> list[SearchResult]:
    """Step-level beam search of width ``n``: sample ``n`` first steps, keep the ``n/m`` the verifier rates
    best, extend each ``m`` times, and repeat; solutions that end occupy their beam slot. Steps end at the
    policy's ``step_delimiter``; at most ``max_steps`` steps. The final answer is picked by ``select`` among
    the (at most ``n/m``) finished solutions. ``options``: a :class:`SearchOptions`, or its fields as keywords."""
    return Strategy("beam_search", n, select, m, max_steps).run(policy, problems, verifier, options, **overrides)


def dvts(
    policy: Policy,
    problems: Sequence[str],
    verifier: Verifier,
    options: SearchOptions | None = None,
    *,
    n: int,
    m: int = 4,
    max_steps: int = 16,
    select: str = "weighted",
    **overrides: Any,
) -> list[SearchResult]:
    """Diverse verifier tree search: ``n/m`` independent subtrees, each a beam of one that keeps the best of
    ``m`` extensions per step, so the solutions stay diverse where one beam search collapses onto one prefix.
    The final answer is picked by ``select`` among the ``n/m`` finished solutions. ``options``: a
    :class:`SearchOptions`, or its fields as keywords."""
    return Strategy("dvts", n, select, m, max_steps).run(policy, problems, verifier, options, **overrides)


def _finish(result: SearchResult, how: str, rng: random.Random, options: SearchOptions) -> SearchResult:
    chosen = select(result.candidates, result.scores, how, rng=rng, answer_of=options.answer_of, equal=options.equal)
    if chosen is not None:
        result.text = result.candidates[chosen]
        result.answer = options.answer_of(result.text)
    return result


def _best_of_n(
    strategy: Strategy, policy: Policy, problems: list[str], verifier: Verifier | None, options: SearchOptions
) -> list[SearchResult]:
    how = strategy.select
    outputs = policy.sample([(p, "", strategy.n) for p in problems], step=False)
    results = []
    for p, comps in zip(problems, outputs):
        r = SearchResult(p, strategy.label, None, None)
        r.policy_tokens = sum(c.n_tokens or 0 for c in comps)
        r.n_failed = sum(c.error is not None for c in comps)
        r.candidates = [c.text for c in comps if c.error is None]
        results.append(r)
    if verifier is not None and how != "majority":
        for r, v in zip(results, verify_batch(verifier, [(r.problem, r.candidates) for r in results])):
            r.scores, r.verifier_tokens, r.verifier_failed = v.scores, v.n_tokens, v.n_failed
    return [_finish(r, how, seeded_rng(options.seed, i), options) for i, r in enumerate(results)]


@dataclass
class _Beam:
    text: str
    group: int
    done: bool
    score: float = 0.0


def _tree_search(
    strategy: Strategy, policy: Policy, problems: list[str], verifier: Verifier, options: SearchOptions
) -> list[SearchResult]:
    """Step-level search shared by beam search and DVTS.

    The first step samples ``n`` steps from the root, dealt round-robin to ``groups`` subtrees (beam search: one,
    with ``n/m`` slots; DVTS: ``n/m``, with one slot each); each later step extends every active beam by ``m``
    samples. All new candidates are rated, and in each subtree the best ``slots`` minus the solutions already
    finished there are kept; finished ones leave the beam for good. The last allowed step samples each beam to the
    end of its solution.
    """
    n, m, max_steps = strategy.n, strategy.m, strategy.max_steps
    groups, slots = (1, n // m) if strategy.method == "beam_search" else (n // m, 1)
    label = strategy.label
    results = [SearchResult(p, label, None, None) for p in problems]
    active: list[list[_Beam]] = [[] for _ in problems]
    finished: list[list[_Beam]] = [[] for _ in problems]
    rngs = [seeded_rng(options.seed, i) for i in range(len(problems))]
    for step in progress_bar(range(max_steps), desc=label, unit="step", progress=options.progress):
        last = step == max_steps - 1
        asks, parents = [], []
        for i, p in enumerate(problems):
            if step == 0:
                asks.append((p, "", n))
                parents.append((i, None))
            for beam in active[i]:
                asks.append((p, beam.text, m))
                parents.append((i, beam))
        if not asks:
            break
        new: list[list[_Beam]] = [[] for _ in problems]
        for (i, parent), comps in zip(parents, policy.sample(asks, step=not last)):
            for j, c in enumerate(comps):
                results[i].policy_tokens += c.n_tokens or 0
                if c.error is not None:
                    results[i].n_failed += 1
                    continue
                prefix, group = (parent.text, parent.group) if parent is not None else ("", j % groups)
                if c.stop_string is not None:
                    new[i].append(_Beam(prefix + c.text + c.stop_string, group, False))
                else:
                    new[i].append(_Beam(prefix + c.text, group, True))
        rated = [i for i in range(len(problems)) if new[i]]
        for i, v in zip(rated, verify_batch(verifier, [(problems[i], [b.text for b in new[i]]) for i in rated])):
            results[i].verifier_tokens += v.n_tokens
            results[i].verifier_failed += v.n_failed
            for beam, s in zip(new[i], v.scores):
                beam.score = s
        for i in range(len(problems)):
            active[i] = []
            for g in range(groups):
                room = slots - sum(b.group == g for b in finished[i])
                pool = [b for b in new[i] if b.group == g]
                ties = [rngs[i].random() for _ in pool]
                ranked = sorted(range(len(pool)), key=lambda x: (-pool[x].score, ties[x]))
                for x in ranked[: max(room, 0)]:
                    (finished[i] if pool[x].done else active[i]).append(pool[x])
    for i, r in enumerate(results):
        r.candidates = [b.text for b in finished[i]]
        r.scores = [b.score for b in finished[i]]
        _finish(r, strategy.select, rngs[i], options)
    return results
