"""A synthetic judging task with exact ground truth: what the shipped default GRM judges, and a benchmark.

The task is small enough for a tiny transformer trained on a CPU to learn. Four kinds of question, each with 1-4
candidate responses; with two or more, exactly one is right and the others are subtly wrong (off by one or ten, a
unit off, two items swapped, the second largest):

- ``add``: "What is 37 + 48?"
- ``convert``: "How many minutes are in 3 hours?"
- ``order``: "Sort from smallest to largest: 42, 17, 35."
- ``max``: "Which is the largest: 42, 17, 35, 29?"

Ground truth is :data:`RIGHT` for a right response and :data:`WRONG` for a wrong one (a lone response is right
half of the time), so SPCT's rule applies as is: with several responses the right one must be scored strictly
highest, a lone response must get exactly its truth. The rule-based teacher that judges it for training is
:class:`grm.training.synthetic.Teacher`; the benchmark is ``grm eval synthetic``.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grm.jsonl import JsonlWriter
from grm.seeding import rng_for
from grm.types import Example, Principle

KINDS = ("add", "convert", "order", "max")
"""The question kinds, in the order :func:`make_examples` cycles through them."""
RIGHT, WRONG = 9, 2
"""Ground-truth rewards (and the teacher's scores) of a right and a wrong response."""
TEMPLATE = "synthetic"
"""The built-in template the task is rendered with (``prompts/synthetic.j2``)."""
ADD_RANGE = (10, 99)
"""Operands of ``add`` questions are drawn from this range (inclusive)."""
NUMBER_RANGE = (10, 99)
"""Numbers of ``order`` and ``max`` questions are distinct draws from this range (inclusive)."""
UNITS = (  # (large unit plural, singular, small unit, factor)
    ("hours", "hour", "minutes", 60),
    ("minutes", "minute", "seconds", 60),
    ("days", "day", "hours", 24),
    ("weeks", "week", "days", 7),
    ("metres", "metre", "centimetres", 100),
    ("kilograms", "kilogram", "grams", 1000),
)
_RESPONSE_FORMS = ("{v}", "{v}.", "The answer is {v}.", "It is {v}.")

_ADD = re.compile(r"^What is (\d+) \+ (\d+)\?$")
_CONVERT = re.compile(r"^How many (\w+) are in (\d+) (\w+)\?$")
_ORDER = re.compile(r"^Sort from smallest to largest: (\d+(?:, \d+)+)\.$")
_MAX = re.compile(r"^Which is the largest: (\d+(?:, \d+)+)\?$")
_INT = re.compile(r"\d+")


@dataclass
class SyntheticExample(Example):
    """An :class:`~grm.types.Example` of the synthetic task, with its question ``kind``."""

    kind: str = "add"


@dataclass(frozen=True)
class Problem:
    """A solved question: its kind, text and right answer (one number, or the sorted numbers for ``order``)."""

    kind: str
    query: str
    answer: tuple[int, ...]
    operands: tuple[int, ...]

    def principle(self, believed: tuple[int, ...]) -> Principle:
        """The one criterion the teacher writes, stating the result it believes after its working (column addition
        for ``add``, the factor for ``convert``: steps a small model can learn, where a bare sum is a lookup of
        thousands of facts)."""
        if self.kind == "add":
            a, b = self.operands
            units = a % 10 + b % 10
            carry = " + 1" if units >= 10 else ""
            work = f"{a % 10} + {b % 10} = {units}, {a // 10} + {b // 10}{carry} = {a // 10 + b // 10 + units // 10}"
            return Principle("Correct sum", 1.0, f"{a} + {b}: {work}, so {believed[0]}.")
        if self.kind == "convert":
            q, unit = self.operands
            big, one, small, factor = UNITS[unit]
            return Principle(
                "Correct conversion", 1.0, f"{q} {one if q == 1 else big} = {q} x {factor} = {believed[0]} {small}."
            )
        if self.kind == "order":
            return Principle("Correct order", 1.0, " < ".join(map(str, believed)) + ".")
        return Principle("Largest number", 1.0, f"the largest is {believed[0]}.")

    def distractors(self) -> list[tuple[int, ...]]:
        """Wrong answers that look right, most plausible first (distinct, never the answer)."""
        if self.kind == "add":
            s = self.answer[0]
            values = [s + 1, s - 1, s + 10, s - 10, s + 2, s - 2]
        elif self.kind == "convert":
            q, unit = self.operands
            factor = UNITS[unit][3]
            wrong = {60: 100, 24: 60, 7: 10, 100: 10, 1000: 100}[factor]
            values = [(q + 1) * factor, (q - 1) * factor, q * wrong, q * factor + 10, q * factor - 10]
        elif self.kind == "order":
            return [p for p in itertools.permutations(self.answer) if p != self.answer]
        else:
            return [(x,) for x in sorted(self.operands, reverse=True) if x != self.answer[0]]
        out: list[tuple[int, ...]] = []
        for v in values:
            if v > 0 and (v,) != self.answer and (v,) not in out:
                out.append((v,))
        return out

    def respond(self, values: tuple[int, ...], rng: random.Random) -> str:
        """A response text giving ``values`` as the answer."""
        if self.kind == "order":
            sep = rng.choice((", ", " < "))
            return sep.join(map(str, values)) if rng.random() < 0.7 else f"The order is {', '.join(map(str, values))}."
        if self.kind == "convert" and rng.random() < 0.5:
            return f"{values[0]} {UNITS[self.operands[1]][2]}."
        return rng.choice(_RESPONSE_FORMS).format(v=values[0])

    def read(self, response: str) -> tuple[int, ...] | None:
        """The answer a response gives: every number for ``order``, else the last number; None if it has none."""
        numbers = tuple(int(x) for x in _INT.findall(response))
        if not numbers:
            return None
        return numbers if self.kind == "order" else numbers[-1:]


def solve(query: str) -> Problem:
    """Parse and solve a synthetic question; ValueError if ``query`` is not one of the task's kinds."""
    q = query.strip()
    if m := _ADD.match(q):
        a, b = int(m.group(1)), int(m.group(2))
        return Problem("add", q, (a + b,), (a, b))
    if m := _CONVERT.match(q):
        small, n, big = m.group(1), int(m.group(2)), m.group(3)
        for u, (plural, one, unit_small, factor) in enumerate(UNITS):
            if small == unit_small and big == (one if n == 1 else plural):
                return Problem("convert", q, (n * factor,), (n, u))
    elif m := _ORDER.match(q):
        numbers = tuple(int(x) for x in m.group(1).split(", "))
        return Problem("order", q, tuple(sorted(numbers)), numbers)
    elif m := _MAX.match(q):
        numbers = tuple(int(x) for x in m.group(1).split(", "))
        return Problem("max", q, (max(numbers),), numbers)
    raise ValueError(f"not a synthetic question: {query!r:.80}; expected one of the kinds {', '.join(KINDS)}")


def make_problem(kind: str, rng: random.Random) -> Problem:
    """A random question of ``kind``."""
    if kind == "add":
        a, b = rng.randint(*ADD_RANGE), rng.randint(*ADD_RANGE)
        return solve(f"What is {a} + {b}?")
    if kind == "convert":
        big, one, small, _ = rng.choice(UNITS)
        n = rng.randint(1, 9)
        return solve(f"How many {small} are in {n} {one if n == 1 else big}?")
    if kind in ("order", "max"):
        numbers = rng.sample(range(NUMBER_RANGE[0], NUMBER_RANGE[1] + 1), 3 if kind == "order" else 4)
        text = ", ".join(map(str, numbers))
        return solve(f"Sort from smallest to largest: {text}." if kind == "order" else f"Which is the largest: {text}?")
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def make_examples(
    n: int,
    seed: int,
    *,
    kinds: Sequence[str] = KINDS,
    response_weights: Sequence[float] = (2, 4, 3, 2),
) -> list[SyntheticExample]:
    """``n`` labelled examples, the same for the same ``seed``; kinds cycle through ``kinds``.

    The number of responses is 1..4 with relative ``response_weights``. With one response it is right half of the
    time; with more, exactly one is right and the others are distinct wrong answers (:meth:`Problem.distractors`).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty selection of {KINDS}, got {list(kinds)}")
    if len(response_weights) != 4 or min(response_weights) < 0 or not sum(response_weights):
        raise ValueError(f"response_weights needs 4 non-negative weights (1..4 responses), got {response_weights}")
    rng = rng_for(seed)
    out = []
    for i in range(n):
        problem = make_problem(kinds[i % len(kinds)], rng)
        wrong = problem.distractors()
        count = rng.choices(range(1, 5), weights=response_weights)[0]
        if count == 1:
            picks = [problem.answer if rng.random() < 0.5 else wrong[min(int(rng.expovariate(0.7)), len(wrong) - 1)]]
        else:
            picks = [problem.answer, *_plausible(wrong, min(count, len(wrong) + 1) - 1, rng)]
            rng.shuffle(picks)
        out.append(
            SyntheticExample(
                query=problem.query,
                responses=[problem.respond(v, rng) for v in picks],
                truth=[float(RIGHT if v == problem.answer else WRONG) for v in picks],
                id=f"{seed}-{i}",
                kind=problem.kind,
            )
        )
    return out


def _plausible(wrong: list[tuple[int, ...]], count: int, rng: random.Random) -> list[tuple[int, ...]]:
    """``count`` distinct distractors, the more plausible (earlier) ones more likely."""
    pool, chosen = list(wrong), []
    for _ in range(count):
        index = min(int(rng.expovariate(0.5)), len(pool) - 1)
        chosen.append(pool.pop(index))
    return chosen


def write_examples(path: str | Path, examples: Iterable[SyntheticExample]) -> Path:
    """Write examples as JSONL (``query``, ``responses``, ``truth``, ``id``, ``kind``...), replacing the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with JsonlWriter(path) as writer:
        for e in examples:
            writer.write(e.to_dict())
    return path
