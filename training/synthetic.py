"""A rule-based teacher that judges the synthetic task (:mod:`grm.synthetic`, re-exported here) in grm's format.

:class:`Teacher` is a rule-based GRM backend: it reads a prompt rendered with the ``synthetic`` template, solves the
query and writes one principle stating the result (after its working), one line of analysis per response (its
answer next to the expected one, then the verdict: the comparison is of adjacent numbers) and the scores, with
:func:`grm.parsing.format_judgement`. With probability ``error_rate`` it errs, in one of two ways, each of which
makes the judgement incorrect by SPCT's rule: a **slip** (it concludes a wrong result, that of a wrong response when
there is one, even after right working, and judges consistently with it) or a **misscore** (right principle and
analysis, but the high score goes to a wrong response). Training on its traces gives a model whose samples are
sometimes wrong: something for rejective fine-tuning to remove and for voting to fix.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from grm.backends import Completion, GenerationRequest
from grm.parsing import format_judgement
from grm.seeding import seeded_rng
from grm.synthetic import KINDS, RIGHT, TEMPLATE, WRONG, SyntheticExample, make_examples, solve, write_examples
from grm.types import Example, Judgement, Message

__all__ = [
    "ERRORS",
    "KINDS",
    "RIGHT",
    "TEMPLATE",
    "WRONG",
    "SyntheticExample",
    "Teacher",
    "TeacherJudgement",
    "consistent",
    "contradicts",
    "make_examples",
    "read_prompt",
    "solve",
    "write_examples",
]

ERRORS = ("slip", "misscore")
"""How the teacher errs (see the module docs)."""

_VERDICT = re.compile(r"^Response (\d{1,3}): ([^\n]*): (right|wrong)\.$", re.M)
_BOX = re.compile(r"\\boxed\{([0-9, ]{1,200})\}")


def contradicts(text: str) -> bool:
    """Whether a judgement in the teacher's format contradicts itself: an analysis line's verdict disagrees with
    its own comparison ("42 vs 42: wrong"), or a response it calls right scores no higher than one it calls wrong
    (scores read from its last box, in the order the judgement saw). Of the teacher's errors, a misscore is the
    second kind and a slip neither; a trained model writes the first kind when it compares two numbers wrongly."""
    verdicts = []
    for number, comparison, verdict in _VERDICT.findall(text):
        answer, vs, expected = comparison.partition(" vs ")
        if vs and (answer == expected) != (verdict == "right"):
            return True
        verdicts.append((int(number) - 1, verdict))
    boxes = _BOX.findall(text)
    if not boxes:
        return False
    try:
        scores = [int(x) for x in boxes[-1].split(",")]
    except ValueError:
        return False
    right = [scores[i] for i, v in verdicts if v == "right" and 0 <= i < len(scores)]
    wrong = [scores[i] for i, v in verdicts if v == "wrong" and 0 <= i < len(scores)]
    return bool(right and wrong and min(right) <= max(wrong))


_QUERY = re.compile(r"^\[The Start of Query\]\n(.*?)\n\[The End of Query\]$", re.S | re.M)
_RESPONSE = re.compile(r"^\[The Start of Response (\d+)\]\n(.*?)\n\[The End of Response \1\]$", re.S | re.M)


def read_prompt(messages: Sequence[Message]) -> tuple[str, list[str]]:
    """The query and the responses (in the order shown) of a prompt rendered with the ``synthetic`` template."""
    text = messages[-1]["content"] if messages else ""
    query = _QUERY.search(text)
    responses = [m.group(2) for m in _RESPONSE.finditer(text)]
    if query is None or not responses:
        raise ValueError(f"not a prompt of the {TEMPLATE!r} template: {text!r:.120}")
    return query.group(1), responses


@dataclass
class TeacherJudgement:
    """A teacher's judgement text and how it erred (None, or one of :data:`ERRORS`)."""

    text: str
    error: str | None


class Teacher:
    """The rule-based teacher: a :class:`grm.backends.Backend` that judges prompts of the synthetic task.

    ``error_rate`` is the probability that a judgement is wrong (see the module docs); draws come from one
    generator seeded with ``seed``. Hints and sampling settings are ignored: the teacher is its own distribution.
    """

    def __init__(self, error_rate: float = 0.25, seed: int = 0) -> None:
        if not 0 <= error_rate <= 1:
            raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
        self.error_rate = error_rate
        self.rng = seeded_rng(seed, "teacher")

    def judge(self, query: str, responses: Sequence[str]) -> TeacherJudgement:
        """One judgement of ``responses`` (in the order shown) to ``query``."""
        problem = solve(query)
        values = [problem.read(r) for r in responses]
        error = self.rng.choice(ERRORS) if self.rng.random() < self.error_rate else None
        believed = problem.answer
        if error == "slip":
            wrong = [v for v in values if v is not None and v != problem.answer]
            believed = self.rng.choice(wrong) if wrong else self.rng.choice(problem.distractors())
        lines, scores = [], []
        expected = ", ".join(map(str, believed))
        for i, v in enumerate(values, 1):
            ok = v == believed
            given = ", ".join(map(str, v)) if v is not None else "no answer"
            lines.append(f"Response {i}: {given} vs {expected}: {'right' if ok else 'wrong'}.")
            scores.append(RIGHT if ok else WRONG)
        if error == "misscore":
            scores = _misscore(scores, self.rng)
        return TeacherJudgement(format_judgement([problem.principle(believed)], "\n".join(lines), scores), error)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        out = []
        for request in requests:
            query, responses = read_prompt(request.messages)
            out.append([Completion(self.judge(query, responses).text, None, "stop") for _ in range(request.n)])
        return out


def _misscore(scores: list[int], rng: random.Random) -> list[int]:
    """Scores with the high score moved off the right response (a lone response's score flipped)."""
    if len(scores) == 1:
        return [WRONG if scores[0] == RIGHT else RIGHT]
    right = [i for i, s in enumerate(scores) if s == RIGHT]
    others = [i for i in range(len(scores)) if i not in right]
    target = rng.choice(others) if others else rng.choice([i for i in range(len(scores))])
    return [RIGHT if i == target else WRONG for i in range(len(scores))]


def consistent(judgement: Judgement, example: Example) -> bool:
    """The synthetic task's rule (:mod:`grm.training.rules`): a judgement passes when it does not contradict itself
    (:func:`contradicts`), a check its scores alone cannot make."""
    return not contradicts(judgement.text)
