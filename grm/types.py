"""Plain data types shared by every part of grm."""

from __future__ import annotations

import dataclasses
import numbers
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

Message = dict[str, str]
"""One chat message: ``{"role": "user" | "assistant" | "system", "content": str}``."""


def completion_text(completion: str | Sequence[Message]) -> str:
    """The text of a completion given as a string or as conversational messages (their contents joined), as
    TRL passes completions to reward functions."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 2, 60, 60, 4, 4


def brief(value: object) -> str:
    """A short repr of any value for an error message: bounded in length and nesting, whatever the value."""
    return _REPR.repr(value)


def unicode_text(text: str, what: str) -> str:
    """``text`` if it is valid Unicode; ValueError naming ``what`` and where otherwise (a lone surrogate, such as
    JSON's ``"\\ud800"``, is text no tokenizer or engine can encode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} holds a lone surrogate ({text[e.start]!r}) at character {e.start}; text must be valid Unicode"
        ) from None
    return text


def normalize_query(query: str | Sequence[Message]) -> list[Message]:
    """Turn a query (a string, or chat messages ending with a user turn) into a validated message list."""
    if isinstance(query, str):
        return [{"role": "user", "content": unicode_text(query, "query")}]
    if not isinstance(query, Sequence) or not query:
        raise TypeError(f"query must be a string or a non-empty list of chat messages, got {brief(query)}")
    messages: list[Message] = []
    for i, m in enumerate(query):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or "role" not in m:
            raise TypeError(f"query message {i} must be a dict with 'role' and string 'content', got {brief(m)}")
        if not isinstance(m["role"], str) or m["role"] not in ("system", "user", "assistant"):
            raise ValueError(f"query message {i} has role {brief(m['role'])}; expected system, user or assistant")
        messages.append({"role": m["role"], "content": unicode_text(m["content"], f"query message {i}")})
    if messages[-1]["role"] != "user":
        raise ValueError(f"the last query message must be a user turn, got role {messages[-1]['role']!r}")
    return messages


def normalize_responses(responses: Sequence[str]) -> list[str]:
    """Validate a list of response strings."""
    if isinstance(responses, str) or not isinstance(responses, Sequence):
        raise TypeError(f"responses must be a list of strings, got {type(responses).__name__}")
    if not responses:
        raise ValueError("responses is empty; give at least one response to score")
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise TypeError(f"response {i} must be a string, got {type(r).__name__}")
        unicode_text(r, f"response {i}")
    return list(responses)


def normalize_principles(principles: str | Sequence[str] | None) -> list[str] | None:
    """Principles to judge by, as a list of strings (a single string is one principle); None for none."""
    if principles is None:
        return None
    if isinstance(principles, str):
        return [unicode_text(principles, "principles")] if principles else None
    if not isinstance(principles, list | tuple):
        raise TypeError(f"principles must be a string or a list of strings, got {type(principles).__name__}")
    for i, p in enumerate(principles):
        if not isinstance(p, str):
            raise TypeError(f"principle {i} must be a string, got {type(p).__name__}")
        unicode_text(p, f"principle {i}")
    return list(principles) or None


def normalize_reference(reference: str | None) -> str | None:
    """A reference answer: a string or None."""
    if reference is not None and not isinstance(reference, str):
        raise TypeError(f"reference must be a string, got {type(reference).__name__}")
    return None if reference is None else unicode_text(reference, "reference")


def normalize_score_range(score_range: Sequence[int]) -> tuple[int, int]:
    """A score range as ``(low, high)``: two integers with low <= high; ValueError naming what is wrong."""
    if (
        isinstance(score_range, str | bytes)
        or not isinstance(score_range, Sequence)
        or len(score_range) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in score_range)
    ):
        raise ValueError(f"score_range must be two integers [low, high], got {brief(score_range)}")
    low, high = int(score_range[0]), int(score_range[1])
    if low > high:
        raise ValueError(f"score_range must be [low, high] with low <= high, got [{low}, {high}]")
    return low, high


def replace_fields(obj: Any, what: str, **changes: Any) -> Any:
    """``dataclasses.replace(obj, **changes)`` (validated as the class validates itself), with a TypeError naming
    every unknown field and listing the known ones (``what``: e.g. "scoring option")."""
    known = [f.name for f in dataclasses.fields(obj)]
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise TypeError(f"unknown {what}(s) {unknown}; the options are {', '.join(known)}")
    return dataclasses.replace(obj, **changes)


ITEM_KEYS = ("query", "responses", "principles", "reference", "id", "hint")
"""The keys a dict item may hold (see :class:`Item`)."""


@dataclass
class Item:
    """One thing to score: a query (a string or chat messages) and its responses, with optional ``principles``
    for the GRM to judge by, a ``reference`` answer, an ``id`` and a ``hint``.

    - ``id`` (a string or an integer) is the item's identity: when ``score_batch`` is given no ``keys``, an item
      with an id is seeded by it (else by its position), so it gets the same reward in any batch, order or chunk.
    - ``hint`` (for RFT's hinted sampling) tells the GRM the answer: with several responses the index of the best
      one (caller's order; the prompt names it in the order shown), with one response its ground-truth score.

    :class:`Example` adds ground truth; ``grm.eval``'s ``EvalItem`` adds the benchmark subset.
    """

    query: str | list[Message]
    responses: list[str]
    principles: str | list[str] | None = field(default=None, kw_only=True)
    reference: str | None = field(default=None, kw_only=True)
    id: str | int | None = field(default=None, kw_only=True)
    hint: int | None = field(default=None, kw_only=True)

    @classmethod
    def coerce(cls, item: Item | Mapping[str, Any] | Sequence[Any]) -> Item:
        """Validate an Item, a mapping with ``query`` and ``responses`` (and any of :data:`ITEM_KEYS`), or a
        ``(query, responses)`` pair, and return a new normalized Item."""
        if isinstance(item, Item):
            responses = normalize_responses(item.responses)
            return Item(
                normalize_query(item.query),
                responses,
                principles=normalize_principles(item.principles),
                reference=normalize_reference(item.reference),
                id=normalize_id(item.id),
                hint=normalize_hint(item.hint, len(responses)),
            )
        if isinstance(item, Mapping):
            unknown = set(item) - set(ITEM_KEYS)
            if "query" not in item or "responses" not in item:
                raise ValueError(f"an item needs 'query' and 'responses'; got keys {sorted(map(str, item))}")
            if unknown:
                raise ValueError(f"unknown item keys {sorted(map(str, unknown))}; expected {', '.join(ITEM_KEYS)}")
            return Item.coerce(Item(**item))
        if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            return Item.coerce(Item(item[0], item[1]))
        raise TypeError(f"cannot read an item from {type(item).__name__}; give a dict or a (query, responses) pair")


def normalize_id(value: Any) -> str | int | None:
    """An item id: a string, an integer or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | numbers.Integral)):
        raise TypeError(f"an item id must be a string or an integer, got {type(value).__name__} {brief(value)}")
    return int(value) if isinstance(value, numbers.Integral) else value


def normalize_hint(value: Any, n: int) -> int | None:
    """A hint for ``n`` responses: the index of the best one (n >= 2) or a score (n == 1), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"hint must be an integer, got {type(value).__name__} {brief(value)}")
    if n > 1 and not 0 <= value < n:
        raise ValueError(f"hint must index one of the {n} responses, got {value}")
    return int(value)


@dataclass
class Principle:
    """One criterion the GRM wrote for a query, with its weight as a fraction (``40%`` -> 0.4) if given."""

    name: str
    weight: float | None
    description: str


@dataclass
class Judgement:
    """One sampled judgement of a set of responses.

    ``scores`` are in the caller's response order (None for a response the judgement did not see: a pairwise or
    one-at-a-time judge sees part of an item); ``order[p]`` is the caller's index of the response shown at position
    ``p`` of the prompt. A pairwise verdict is scores 1 and 0 (0.5 each for a tie). A judgement whose verdict could
    not be read has ``scores=None`` and a short ``error``; its ``text`` is kept. ``thinking`` is the reasoning the
    judge wrote before its answer (never read for the verdict); ``ranking``, when the judge gave one, lists caller
    indices best first; ``strength`` is how strongly a pairwise judge prefers its winner, when it says.
    """

    text: str
    principles: list[Principle] = field(default_factory=list)
    analysis: str = ""
    scores: list[float | None] | None = None
    order: list[int] | None = None
    error: str | None = None
    n_tokens: int | None = None
    thinking: str | None = None
    ranking: list[int] | None = None
    strength: float | None = None

    @property
    def valid(self) -> bool:
        return self.scores is not None and self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Judgement:
        d = dict(d)
        d["principles"] = [Principle(**p) for p in d.get("principles", [])]
        return cls(**d)


@dataclass
class Reward:
    """The outcome of scoring one query's responses with k judgements.

    ``rewards[i]`` is the sum of response i's scores over the voted valid judgements (caller's order) and
    ``mean[i]`` their average; both are None when no judgement was valid. ``best`` is the index of the
    highest mean (ties broken at random, seeded: :attr:`tie` says when it was one). ``kept`` lists the indices of the
    judgements that were voted (all valid ones, or the top ``k_meta`` by meta score when a meta RM guided the vote).
    ``seed`` is the seed the call scored with (the caller's, or the one drawn for an unseeded call): scoring the same
    items with the same keys and ``seed=reward.seed`` repeats the result.
    """

    rewards: list[float] | None
    best: int | None
    judgements: list[Judgement]
    n_valid: int
    mean: list[float] | None
    kept: list[int] = field(default_factory=list)
    meta_scores: list[float] | None = None
    n_retries: int = 0
    seed: int | None = None

    @property
    def n_invalid(self) -> int:
        return len(self.judgements) - self.n_valid

    @property
    def tie(self) -> bool:
        """Whether other responses share the best one's ``mean``: ``best`` is then one of them, drawn at random from
        the item's seed (the same for the same seed); False when nothing was voted."""
        return self.mean is not None and self.mean.count(max(self.mean)) > 1

    def __repr__(self) -> str:
        def numbers(values: list[float] | None) -> str:
            return "None" if values is None else "[" + ", ".join(f"{v:g}" for v in values) + "]"

        return (
            f"Reward(rewards={numbers(self.rewards)}, mean={numbers(self.mean)}, best={self.best}"
            f"{' (tie)' if self.tie else ''}, valid={self.n_valid}/{len(self.judgements)}, seed={self.seed})"
        )

    @property
    def n_drawn(self) -> int:
        """Judgements generated for this item, resamples included (what a scoring ``budget`` counts); with
        adaptive scoring ``len(judgements)``, the samples voted on, may be fewer than k."""
        return len(self.judgements) + self.n_retries

    def normalized(self, score_range: Sequence[int]) -> list[float] | None:
        """``mean`` mapped linearly from the GRM's ``score_range`` (low, high) onto [0, 1]; all 0.0 for a range
        of one value; None when no judgement was valid."""
        if self.mean is None:
            return None
        lo, hi = score_range
        return [(m - lo) / (hi - lo) if hi > lo else 0.0 for m in self.mean]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reward:
        d = dict(d)
        d["judgements"] = [Judgement.from_dict(j) for j in d.get("judgements", [])]
        return cls(**d)


@dataclass
class Example(Item):
    """A labelled :class:`Item` for training and evaluation.

    ``truth`` holds one ground-truth reward per response: with n >= 2 responses its unique maximum marks the
    best one; with one response it is the response's true rating (e.g. 1/0 for correct/incorrect).
    """

    truth: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        """The example (of this class) in a dict such as :meth:`to_dict` writes; keys it does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
