"""Readers of the built-in judge formats: a judge's answer (thinking already split off) -> a :class:`Judgement`.

Each reader takes the **last** verdict of its format in the answer (a verdict quoted from a response, or written
while the judge was still explaining, comes earlier), reads only ASCII digits, checks the score range, and never
raises on model output. With ``truncated`` (the answer was cut at the token limit) a verdict counts only where the
answer ends: one found earlier may be a quote the judge never got past. Every pattern here is linear in the length
of the answer. docs/judges.md gives each format's source and what its own reader does differently.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator

from grm.parsing import box_content, parse_scores
from grm.types import Judgement

_TAIL = re.compile(r"[\s*_.!)\]>`\"']*\Z")
"""What may follow a verdict at the very end of an answer: blanks, closing markup and punctuation."""


def _last(matches: Iterator[re.Match[str]]) -> re.Match[str] | None:
    tail = deque(matches, maxlen=1)
    return tail[0] if tail else None


def _at_end(answer: str, end: int) -> bool:
    return _TAIL.match(answer, end) is not None


def _verdict(answer: str, pattern: re.Pattern[str], truncated: bool) -> re.Match[str] | None:
    """The last match of ``pattern`` in ``answer`` (when ``truncated``, only one the answer ends with)."""
    match = _last(pattern.finditer(answer))
    if match is not None and truncated and not _at_end(answer, match.end()):
        return None
    return match


def _no_verdict(answer: str, what: str, truncated: bool) -> Judgement:
    if not answer.strip():
        return Judgement(text=answer, error="empty answer")
    error = f"cut off at the token limit before {what}" if truncated else f"no {what}"
    return Judgement(text=answer, analysis=answer.strip(), error=error)


def _in_range(value: int, score_range: tuple[int, int]) -> str | None:
    lo, hi = score_range
    return None if lo <= value <= hi else f"score {value} out of range [{lo}, {hi}]"


def pointwise_one(answer: str, score: re.Pattern[str], what: str, score_range: tuple[int, int], truncated: bool):
    """One response's integer score from ``score``'s last match (group ``score``); the text before it is the
    analysis."""
    match = _verdict(answer, score, truncated)
    if match is None:
        return _no_verdict(answer, what, truncated)
    digits = match.group("score")
    if len(digits) > 6:
        return Judgement(text=answer, analysis=answer[: match.start()].strip(), error=f"score {digits[:8]}... too long")
    value = int(digits)
    error = _in_range(value, score_range)
    return Judgement(
        text=answer, analysis=answer[: match.start()].strip(), scores=None if error else [value], error=error
    )


def pairwise(answer: str, match: re.Match[str] | None, what: str, truncated: bool) -> Judgement:
    """A two-response verdict from ``match`` (group ``winner``: A/B or 1/2, or C for a tie): scores 1 and 0, 0.5
    each for a tie; the text before it is the analysis."""
    if match is None:
        return _no_verdict(answer, what, truncated)
    return _preference(answer, match.group("winner"), match.start())


def _preference(answer: str, winner: str, start: int, strength: float | None = None) -> Judgement:
    scores = {"A": [1.0, 0.0], "1": [1.0, 0.0], "B": [0.0, 1.0], "2": [0.0, 1.0]}.get(winner.upper(), [0.5, 0.5])
    return Judgement(text=answer, analysis=answer[:start].strip(), scores=scores, strength=strength)  # type: ignore[arg-type]


def _pairwise_only(n: int, answer: str) -> Judgement | None:
    return None if n == 2 else Judgement(text=answer, error=f"a pairwise verdict needs 2 responses shown, got {n}")


# ---------------------------------------------------------------------------------------------------- Prometheus 2

_PROMETHEUS_SCORE = re.compile(
    r"(?:\[RESULT\]|\[SCORE\]|\bscore\s+of|\bscore\b:?|\bresult\b:?|\(score|\[score)"
    r"[ \t]*[:\[(]?[ \t]*(?P<score>[0-9]+)[ \t]*(?:\)|\]|/[ \t]*5|out[ \t]+of[ \t]+5)?[ \t]*\.?\s*\Z",
    re.I,
)
_PROMETHEUS_WINNER = re.compile(
    r"(?:\[RESULT\]|\[RESULT:|\[Response|\[Result:|^[ \t]*Result:)"
    r"[ \t]*(?:Response[ \t]*)?(?P<winner>[AB])[ \t]*\]?[ \t]*$",
    re.I | re.M,
)


def read_prometheus_absolute(answer: str, n: int, score_range: tuple[int, int], *, truncated: bool = False):
    """Prometheus 2 absolute grading: feedback, then ``[RESULT] n`` at the end (and the spellings prometheus-eval
    accepts: ``[Result] 4/5``, ``Score: 3``, ``score of 1``, ``(Score 5)``, ``[RESULT] 5 out of 5``)."""
    if n != 1:
        return Judgement(text=answer, error=f"an absolute grade is of 1 response shown, got {n}")
    return pointwise_one(answer, _PROMETHEUS_SCORE, "[RESULT] verdict", score_range, truncated)


def read_prometheus_relative(answer: str, n: int, score_range: tuple[int, int], *, truncated: bool = False):
    """Prometheus 2 relative grading: feedback, then ``[RESULT] A`` or ``[RESULT] B`` on the last verdict line
    (also ``[RESULT: B]``, ``[Response B]``, ``[Result] Response B``, a line ``Result: A``)."""
    return _pairwise_only(n, answer) or pairwise(
        answer, _verdict(answer, _PROMETHEUS_WINNER, truncated), "[RESULT] A or B verdict", truncated
    )


# ---------------------------------------------------------------------------------------------------- [[A]] / [[B]]

_BRACKET_VERDICT = re.compile(r"\[\[(?P<winner>[ABC])\]\]|\[\[(?P<left>[AB])(?P<op>>>|>|=|<<|<)(?P<right>[AB])\]\]")


def read_pairwise_verdict(answer: str, n: int, score_range: tuple[int, int], *, truncated: bool = False):
    """MT-Bench-style verdicts: the last ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie); also Arena-Hard's
    ``[[A>>B]]`` / ``[[A>B]]`` / ``[[A=B]]`` / ``[[B>A]]`` / ``[[B>>A]]``, whose ``>>`` is a strength of 2."""
    if (wrong := _pairwise_only(n, answer)) is not None:
        return wrong
    match = _verdict(answer, _BRACKET_VERDICT, truncated)
    if match is None or match.group("winner"):
        return pairwise(answer, match, "[[A]], [[B]] or [[C]] verdict", truncated)
    left, op, right = match.group("left"), match.group("op"), match.group("right")
    if left == right or op == "=":
        return _preference(answer, "C", match.start())
    return _preference(answer, left if op.startswith(">") else right, match.start(), strength=float(len(op)))


_ANSWER_TAG = re.compile(r"<answer>\s*(?:\[\[)?\s*(?P<winner>[AB])\s*(?:\]\])?\s*</answer>", re.I)


def read_answer_tag(answer: str, n: int, score_range: tuple[int, int], *, truncated: bool = False):
    """RM-R1's ``<answer>[[A]]</answer>`` and GRAM-R2's ``<answer>A</answer>``: the last one."""
    return _pairwise_only(n, answer) or pairwise(
        answer, _verdict(answer, _ANSWER_TAG, truncated), "<answer> verdict", truncated
    )


# ---------------------------------------------------------------------------------------------------- tagged scores

_SCORE_TAG = re.compile(r"<score>\s*(?P<score>[0-9]+)\s*</score>", re.I)
_FEEDBACK = re.compile(r"<feedback>(.*?)</feedback>", re.I | re.S)


def read_score_tag(answer: str, n: int, score_range: tuple[int, int], *, truncated: bool = False):
    """Flow-Judge: ``<feedback>...</feedback>`` then ``<score>n</score>`` (the last)."""
    if n != 1:
        return Judgement(text=answer, error=f"a score tag grades 1 response shown, got {n}")
    judgement = pointwise_one(answer, _SCORE_TAG, "<score> verdict", score_range, truncated)
    feedback = _last(_FEEDBACK.finditer(answer))
    if feedback is not None:
        judgement.analysis = feedback.group(1).strip()
    return judgement


_RESULT_LINE = re.compile(r"^[ \t]*\*\*Result:\*\*[ \t]*(?P<score>[0-9]+)[ \t]*$", re.M)


def read_result_line(answer: str, n: int, score_range: tuple[int, int], *, truncated: bool = False):
    """Selene: ``**Reasoning:** ...`` then a line ``**Result:** n`` (the last)."""
    if n != 1:
        return Judgement(text=answer, error=f"a result line grades 1 response shown, got {n}")
    judgement = pointwise_one(answer, _RESULT_LINE, "**Result:** line", score_range, truncated)
    judgement.analysis = judgement.analysis.removeprefix("**Reasoning:**").strip()
    return judgement


# ---------------------------------------------------------------------------------------------------- listwise

_JSON_START = re.compile(r"(?:\A|(?<=\n)|(?<=```json)|(?<=```))\s*\{")
_MAX_JSON_TRIES = 16


def _json_objects(answer: str) -> list[tuple[dict, int]]:
    """The JSON objects (with where each ends) that start the answer, a line or a code fence, last first (at most a
    few tries, so that a run of braces costs linear time)."""
    decoder = json.JSONDecoder()
    starts = [m.end() - 1 for m in _JSON_START.finditer(answer)][-_MAX_JSON_TRIES:]
    found = []
    for start in reversed(starts):
        try:
            value, end = decoder.raw_decode(answer, start)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            found.append((value, end))
    return found


def read_reward_anything(answer: str, n: int, score_range: tuple[int, int], *, truncated: bool = False):
    """RewardAnything: a JSON object ``{"scores": {"model-1": s, ...}, "best-to-worst": ["model-2", ...]}`` (in a
    code fence or not; the last that has ``scores``), responses named ``model-1..model-n`` in the order shown.
    Every shown response needs an integer score in range; the ranking is kept when it orders all of them."""
    names = [f"model-{i}" for i in range(1, n + 1)]
    for obj, end in _json_objects(answer):
        scores = obj.get("scores")
        if not isinstance(scores, dict):
            continue
        if truncated and not _at_end(answer, end):
            break
        values = [scores.get(name) for name in names]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            missing = [name for name, v in zip(names, values) if not isinstance(v, int) or isinstance(v, bool)]
            return Judgement(text=answer, error=f"no integer score for {missing[:4]}")
        for value in values:
            if (error := _in_range(value, score_range)) is not None:  # type: ignore[arg-type]
                return Judgement(text=answer, error=error)
        order = obj.get("best-to-worst")
        complete = isinstance(order, list) and sorted(map(str, order)) == sorted(names)
        ranking = [names.index(x) for x in order] if complete else None  # type: ignore[union-attr]
        return Judgement(text=answer, scores=values, ranking=ranking)  # type: ignore[arg-type]
    return _no_verdict(answer, 'JSON verdict with "scores"', truncated)


_INDIVIDUAL = re.compile(r"\[The Begin of Individual Scores\]\s*(?=\\boxed)", re.I)
_RANKING = re.compile(r"\[The Begin of Ranking Score\]\s*\\boxed\{\s*(?P<rank>[0-9])\s*\}", re.I)
_ANALYSIS_END = re.compile(r"\[The Begin of Individual Scores\]", re.I)


def read_nemotron(answer: str, n: int, score_range: tuple[int, int], *, truncated: bool = False):
    """Nemotron GenRM (HelpSteer3): ``[The Begin of Individual Scores]\\n\\boxed{x, y}`` with each response's
    helpfulness, and for two responses ``[The Begin of Ranking Score]\\n\\boxed{z}``, z in 1..6 (1: response 1 much
    better ... 6: response 2 much better). The helpfulness scores are the verdict; the ranking score, when there,
    gives the ranking and its strength (1 slightly, 2 better, 3 much better)."""
    if n not in (1, 2):
        return Judgement(text=answer, error=f"Nemotron GenRM judges 1 or 2 responses, got {n}")
    section = _verdict(answer, _INDIVIDUAL, False)
    if section is None:
        return _no_verdict(answer, "individual scores section", truncated)
    box = box_content(answer, section.end())
    if box is None:
        return _no_verdict(answer, "closed individual scores box", truncated)
    scores, error = parse_scores(box, n, score_range)
    analysis = answer[: section.start()].strip()
    if error:
        return Judgement(text=answer, analysis=analysis, error=error)
    judgement = Judgement(text=answer, analysis=analysis, scores=scores)  # type: ignore[arg-type]
    rank = _last(_RANKING.finditer(answer, section.end())) if n == 2 else None
    if rank is not None and 1 <= int(rank.group("rank")) <= 6:
        z = int(rank.group("rank"))
        judgement.ranking = [0, 1] if z <= 3 else [1, 0]
        judgement.strength = float(abs(z - 3.5) + 0.5)
    elif truncated and n == 2:
        return Judgement(text=answer, analysis=analysis, error="cut off at the token limit before the ranking score")
    return judgement
