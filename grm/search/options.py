"""What every search entry point shares beside its strategy, validated once: :class:`SearchOptions`."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grm.search.answers import AnswerOf, Equal, extract_answer
from grm.seeding import random_seed
from grm.types import replace_fields


@dataclass(frozen=True)
class SearchOptions:
    """How a search runs, validated once; every search entry point takes these whole (or one by one as keywords).

    - ``seed``: seeds the random tie-breaks (among equally rated candidates while pruning, and in the final
      selection). None: each call draws a fresh seed, recorded on its results (``SearchResult.seed``), so any run
      can be repeated. The policy and a GRM verifier sample with seeds of their own (``Policy.seed``,
      ``GRMVerifier.options.seed``);
    - ``answer_of``: a candidate's final answer, for the votes and ``SearchResult.answer`` (default: the content of
      its last ``\\boxed{}``);
    - ``equal``: when two answers count as the same in a vote (None: ``==``; e.g. :func:`grm.search.math_equal`);
    - ``progress``: a progress bar over the steps of step-level search.
    """

    seed: int | None = None
    answer_of: AnswerOf = extract_answer
    equal: Equal | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        s = self.seed
        if s is not None:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral):
                raise TypeError(f"seed must be an integer (or None to draw one), got {s!r}")
            object.__setattr__(self, "seed", int(s))
        if not callable(self.answer_of):
            raise TypeError(f"answer_of must be a function of a candidate's text, got {self.answer_of!r}")
        if self.equal is not None and not callable(self.equal):
            raise TypeError(f"equal must be a function of two answers (or None for ==), got {self.equal!r}")
        if not isinstance(self.progress, bool):
            raise TypeError(f"progress must be True or False, got {self.progress!r}")

    def replace(self, **changes: Any) -> SearchOptions:
        """A copy with ``changes`` applied (and validated); TypeError naming any option that does not exist."""
        return replace_fields(self, "search option", **changes)


def resolve_search_options(options: SearchOptions | None, overrides: Mapping[str, Any]) -> SearchOptions:
    """What a search taking ``options=None, **overrides`` runs with: ``options`` (None: the defaults) with the
    ``overrides`` applied, and a freshly drawn seed when it has none."""
    base = SearchOptions() if options is None else options
    if not isinstance(base, SearchOptions):
        raise TypeError(f"options must be a grm.search.SearchOptions, got {type(base).__name__}")
    resolved = base.replace(**overrides) if overrides else base
    return resolved if resolved.seed is not None else resolved.replace(seed=random_seed())
