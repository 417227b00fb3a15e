"""Verifiers: anything that rates a problem's candidate solutions, and adapters for a GRM and answer checkers.

A verifier is any callable ``(problem, candidates) -> list[float]``, higher meaning better. Adapters also have
``verify_batch(entries) -> list[Verification]`` so that a search rates every problem of a step in one call
(one backend call for a GRM) and learns how many tokens the verifier generated.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from grm.scoring import JudgementRater, ScoringOptions, check_meta_rm, chunks, resolve_options
from grm.search.answers import AnswerOf, Equal, extract_answer, math_equal
from grm.seeding import random_seed, rng_for, seed_for

logger = logging.getLogger(__name__)

Entry = tuple[str, Sequence[str]]
"""One problem and its candidate solutions."""


@runtime_checkable
class Verifier(Protocol):
    """Rates the candidate solutions of one problem: one float per candidate, higher is better."""

    def __call__(self, problem: str, candidates: Sequence[str]) -> list[float]: ...


@dataclass
class Verification:
    """A verifier's rating of one problem's candidates: ``scores`` (caller's order), the tokens the verifier
    generated to produce them, and how many candidates it could not rate (they got a fixed fallback score)."""

    scores: list[float]
    n_tokens: int = 0
    n_failed: int = 0


def verify_batch(verifier: Verifier, entries: Sequence[Entry]) -> list[Verification]:
    """Rate many problems' candidates: one ``verifier.verify_batch`` call when it has one, else one call per
    problem (a plain callable generates no tokens we know of). Checks that each problem got one finite
    score per candidate."""
    if not entries:
        return []
    batch = getattr(verifier, "verify_batch", None)
    if callable(batch):
        out = list(batch(entries))
    else:
        out = [Verification([float(s) for s in verifier(problem, list(cands))]) for problem, cands in entries]
    if len(out) != len(entries):
        raise RuntimeError(f"verifier returned {len(out)} results for {len(entries)} problems")
    for (problem, cands), v in zip(entries, out):
        if len(v.scores) != len(cands):
            raise ValueError(
                f"verifier returned {len(v.scores)} scores for {len(cands)} candidates of problem {problem!r:.60}"
            )
        if not all(math.isfinite(s) for s in v.scores):
            raise ValueError(f"verifier returned a non-finite score {v.scores} for problem {problem!r:.60}")
    return out


class GRMVerifier:
    """A :class:`grm.GRM` judging a problem's candidates together (listwise), at most ``n_max`` per prompt.

    The problem is the query, the candidates the responses; ``options`` (a :class:`grm.ScoringOptions`; its fields
    also by keyword, e.g. ``k=4``) set how the GRM scores, with ``meta_rm`` as in :meth:`grm.GRM.score_batch`.
    Without a seed one is drawn and kept in ``options.seed``, so that the verifier's judgements can be repeated.
    A candidate's score is its mean voted score mapped from the GRM's ``score_range`` onto [0, 1]
    (:meth:`grm.Reward.normalized`). A candidate whose judgements all failed gets ``failed_value`` (default 0.0,
    the worst score) and is counted in ``Verification.n_failed``. Adaptive compute passes through
    (``adaptive=True, risk=0.01``; ``budget``, per ``verify_batch`` call): a chunk whose best candidate is clear
    costs fewer judgements, and ``Verification.n_tokens`` counts only those drawn.

    More than ``n_max`` candidates are judged in chunks of near-equal size after a seeded random permutation.
    Scores from different chunks are compared directly: a GRM's scores are pointwise ratings on a fixed scale
    (one integer per response against the query's principles, not a ranking), and the random split keeps a
    chunk from being systematically better or worse than the others. All chunks of all problems go to the
    GRM in one ``score_batch`` call. Each call (and its chunking) is seeded from ``seed`` plus the number of calls
    before it, so repeated calls draw fresh but reproducible judgements.
    """

    def __init__(
        self,
        grm: Any,
        options: ScoringOptions | None = None,
        *,
        n_max: int = 8,
        meta_rm: JudgementRater | None = None,
        failed_value: float = 0.0,
        **overrides: Any,
    ) -> None:
        if n_max < 1:
            raise ValueError(f"n_max must be >= 1, got {n_max}")
        lo, hi = grm.score_range
        if hi <= lo:
            raise ValueError(f"the GRM's score_range must have low < high to normalise, got {grm.score_range}")
        self.grm, self.n_max, self.meta_rm, self.failed_value = grm, n_max, meta_rm, failed_value
        self.options = resolve_options(options, overrides)
        if self.options.seed is None:
            self.options = self.options.replace(seed=random_seed())
        check_meta_rm(self.options, meta_rm is not None)
        self._calls = 0

    def __call__(self, problem: str, candidates: Sequence[str]) -> list[float]:
        return self.verify_batch([(problem, candidates)])[0].scores

    def verify_batch(self, entries: Sequence[Entry]) -> list[Verification]:
        """Judge every chunk of every problem in one ``GRM.score_batch`` call."""
        options = self.options.replace(seed=seed_for(self.options.seed, self._calls))
        self._calls += 1
        rng = rng_for(options.seed)
        items, owners = [], []
        for e, (problem, cands) in enumerate(entries):
            for chunk in chunks(len(cands), self.n_max, rng):
                items.append({"query": problem, "responses": [cands[i] for i in chunk]})
                owners.append((e, chunk))
        if not items:
            return [Verification([]) for _ in entries]
        rewards = self.grm.score_batch(items, options, meta_rm=self.meta_rm)
        out = [Verification([self.failed_value] * len(cands)) for _, cands in entries]
        for (e, chunk), reward in zip(owners, rewards):
            v = out[e]
            v.n_tokens += sum(j.n_tokens or 0 for j in reward.judgements)
            normalized = reward.normalized(self.grm.score_range)
            if normalized is None:
                v.n_failed += len(chunk)
                continue
            for i, x in zip(chunk, normalized):
                v.scores[i] = x
        failed = sum(v.n_failed for v in out)
        if failed:
            logger.warning("GRM verifier: %d candidates got no valid judgement; scored %s", failed, self.failed_value)
        return out


class AnswerChecker:
    """An outcome checker: 1.0 for a candidate whose final answer equals the problem's reference, else 0.0.

    ``references`` maps each problem to its reference answer (a mapping or a function). The candidate's answer
    is ``answer_of(candidate)`` (default: its last ``\\boxed{}``); answers are compared with ``equal`` (default
    :func:`grm.search.math_equal`, mathematical equivalence through ``math-verify``).
    """

    def __init__(
        self,
        references: Mapping[str, str] | Callable[[str], str],
        *,
        answer_of: AnswerOf = extract_answer,
        equal: Equal = math_equal,
    ) -> None:
        self.references, self.answer_of, self.equal = references, answer_of, equal

    def reference(self, problem: str) -> str:
        """The reference answer of ``problem``; KeyError naming it when there is none."""
        if callable(self.references):
            return self.references(problem)
        if problem not in self.references:
            raise KeyError(f"no reference answer for problem {problem!r:.80}")
        return self.references[problem]

    def __call__(self, problem: str, candidates: Sequence[str]) -> list[float]:
        ref = self.reference(problem)
        answers = [self.answer_of(c) for c in candidates]
        return [float(a is not None and self.equal(ref, a)) for a in answers]
