"""A judge format: how items are shown to a judge (a prompt template, and which responses each judgement sees) and
how its completion is read (a reader), with the kind of verdict it gives and the range of its scores."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path

from grm.escaping import DELIMITERS
from grm.prompts import PromptTemplate
from grm.types import Judgement, normalize_score_range

Reader = Callable[..., Judgement]
"""``reader(answer, n, score_range, *, truncated=False) -> Judgement``: the verdict in a judge's answer (its thinking
already split off, see :mod:`grm.thinking`) on ``n`` shown responses, scores in the order shown. ``truncated``: the
answer was cut at the token limit (a verdict must then be where the answer ends, not one quoted earlier). Never
raises on model output: anything unreadable is ``Judgement.error`` with ``scores=None``."""

VERDICTS = ("pointwise", "pairwise", "listwise")
SHOWS = ("all", "one", "two")


@dataclass(frozen=True)
class JudgeFormat:
    """One way of asking a judge and reading its answer.

    - ``template``: the prompt (a built-in template name, a ``.j2`` path or a :class:`~grm.prompts.PromptTemplate`).
    - ``read``: the :data:`Reader` of its answers.
    - ``verdict``: ``pointwise`` (a score per shown response), ``pairwise`` (a preference between two shown
      responses: scores 1/0, or 0.5/0.5 for a tie) or ``listwise`` (scores or a ranking of all shown responses).
    - ``shows``: the responses one judgement sees: ``all`` of an item's, ``one`` at a time (absolute graders), or
      ``two`` (pairwise judges; an item of N responses is compared pair by pair).
    - ``score_range``: the range of the scores the reader returns (``(0, 1)`` for a pairwise verdict).
    - ``thinks``: the judge writes a thinking block before its answer (give it room: see docs/judges.md).
    - ``delimiters``: what in user text would look like the prompt's structure or a verdict (regular expressions
      over :func:`grm.escaping.skeleton`), escaped wherever it appears; default :data:`grm.escaping.DELIMITERS`.
    - ``max_responses``: the most responses one judgement may show (None: no limit).
    - ``source``: the paper, model card or repository file the format follows.

    Whatever the format, a judgement's ``scores`` end up in the caller's order (None for a response it did not
    see), so voting, the meta RM, adaptive stopping, evaluation, search, RL rewards and the server work unchanged.
    """

    name: str
    template: str | Path | PromptTemplate
    read: Reader
    verdict: str = "pointwise"
    shows: str = "all"
    score_range: tuple[int, int] = (1, 10)
    thinks: bool = False
    delimiters: tuple[str, ...] = DELIMITERS
    max_responses: int | None = None
    source: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a judge format needs a name, got {self.name!r}")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {self.verdict!r}")
        if self.shows not in SHOWS:
            raise ValueError(f"shows must be one of {', '.join(SHOWS)}, got {self.shows!r}")
        if (self.verdict == "pairwise") != (self.shows == "two"):
            raise ValueError("a pairwise verdict is given on two shown responses, and only it (shows='two')")
        if not callable(self.read):
            raise TypeError(f"read must be a function (answer, n, score_range) -> Judgement, got {self.read!r}")
        template = self.template
        object.__setattr__(
            self, "template", template if isinstance(template, PromptTemplate) else PromptTemplate.load(template)
        )
        object.__setattr__(self, "score_range", normalize_score_range(self.score_range))

    def with_template(self, template: str | Path | PromptTemplate) -> JudgeFormat:
        """This format with another prompt (e.g. a checkpoint's own wording), read the same way."""
        return replace(self, template=template)

    def units(self, n: int) -> list[tuple[int, ...]]:
        """The sets of caller indices one judgement sees, for an item of ``n`` responses: all of them, each alone,
        or every pair (a pairwise judge needs at least two responses)."""
        if self.max_responses is not None and self.shows == "all" and n > self.max_responses:
            raise ValueError(f"the {self.name!r} judge scores at most {self.max_responses} responses at once; got {n}")
        if self.shows == "all":
            return [tuple(range(n))]
        if self.shows == "one":
            return [(i,) for i in range(n)]
        if n < 2:
            raise ValueError(f"the {self.name!r} judge compares two responses at a time; got {n}")
        return list(combinations(range(n), 2))

    def orders(self, n: int, k: int, rng: random.Random, shuffle: bool) -> list[list[int]]:
        """The response order of each judgement of an item of ``n`` responses with ``k`` samples per unit (see
        :meth:`units`), sample-major: judgement ``s * len(units) + u`` is sample ``s`` of unit ``u``.

        ``all``: each sample shows the n responses in a fresh random order (SPCT's shuffling). ``two``: the k
        samples of a pair are split between its two presentation orders (a seeded coin decides which order gets
        the odd one), so a judge that always prefers the first shown response comes out even.
        """
        units = self.units(n)
        if self.shows == "all":
            return [_shuffled(n, rng) if shuffle else list(range(n)) for _ in range(k)]
        if self.shows == "one":
            return [list(u) for _ in range(k) for u in units]
        return self.pair_orders(units, k, rng, shuffle)

    @staticmethod
    def pair_orders(pairs: list[tuple[int, ...]], k: int, rng: random.Random, shuffle: bool = True) -> list[list[int]]:
        """``k`` samples of each pair, sample-major, split between the pair's two presentation orders (a seeded
        coin per pair decides which order gets the odd one); without ``shuffle``, in the order given."""
        if not shuffle:
            return [list(u) for _ in range(k) for u in pairs]
        flips = [rng.random() < 0.5 for _ in pairs]
        return [list(u)[:: -1 if flips[i] != bool(s % 2) else 1] for s in range(k) for i, u in enumerate(pairs)]


def _shuffled(n: int, rng: random.Random) -> list[int]:
    order = list(range(n))
    rng.shuffle(order)
    return order
