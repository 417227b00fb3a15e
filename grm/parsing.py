"""Read a GRM's generated text into a :class:`~grm.types.Judgement`.

The scores are the **last** ``\\boxed{...}`` of the generated text (``\\boxed {...}`` too): earlier boxes
(per-criterion sub-scores, a box quoted from a response) are ignored. Scores are written in ASCII digits: ``٣``,
``７`` or ``𝟕`` in a box are not scores (an error, as any other unreadable box). Parsing never raises on model output: a
problem is recorded as ``Judgement.error`` with a short reason and ``scores=None``. Every step takes time linear in
the length of the text (no pattern here can backtrack over a run of spaces, digits or braces), so a degenerate
sample of any size is parsed in milliseconds.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator

from grm.types import Judgement, Principle

_HEADER = r"^[ \t#>*_]*+{name}[ \t*_]*+:?[ \t*_]*+:?"
_CRITERIA = re.compile(_HEADER.format(name=r"(?:specific\s++)?(?:criteria|principles)"), re.I | re.M)
_ANALYSIS = re.compile(_HEADER.format(name=r"(?:analysis|critique)"), re.I | re.M)
_SCORES = re.compile(_HEADER.format(name=r"(?:final\s++)?scores?"), re.I | re.M)
_BOX_START = re.compile(r"\\boxed\s*+\{")
_LATEX_TEXT = re.compile(r"\\(?:text|mathrm|textbf)\{([^{}]*+)\}")
# A comma or semicolon, or a whitespace run (taken whole: only where it starts) followed by a number.
_SCORE_SEPARATOR = re.compile(r"[,;]|(?<!\s)\s++(?=[+-]?[0-9])")
_INT = re.compile(r"[+-]?[0-9]++")
_MAX_SCORE_DIGITS = 4000
"""Longer digit strings are out of any score range (and beyond what ``int()`` converts by default)."""

# A principle is "<marker> <name> (Weight: <w>[%]) <separator> <description>"; the name has no ``*_(:`` or newline.
_WEIGHT = re.compile(r"\(\s*+weight\s*+[:=]?\s*+(?P<weight>[0-9]++(?:\.[0-9]++)?)\s*+(?P<pct>%)?\s*+\)", re.I)
_LINE_MARKER = re.compile(r"\s*+(?:[0-9]++[.)]|[-*+])")
_INLINE_MARKER = re.compile(r"(?<!\S)(?:[0-9]++[.)]|[-+]|\*(?!\*))")  # "**" opens bold, not a bullet
_NAME_FORBIDDEN = re.compile(r"[*_(\n:]")
_AFTER_WEIGHT = re.compile(r"\s*+(?:\*\*|__)?\s*+[:\-–]?\s*+")  # a description may start on the next line
_GAP_BEFORE_BOX = re.compile(r"[\s*_:$]*+")


def _last(matches: Iterator[re.Match[str]]) -> re.Match[str] | None:
    tail = deque(matches, maxlen=1)
    return tail[0] if tail else None


def _box_start(text: str, lo: int = 0) -> int:
    """Index of the last ``\\boxed{`` (or ``\\boxed {``) at or after ``lo``; -1 if none."""
    i = text.rfind("\\boxed")
    while i >= lo:
        if _BOX_START.match(text, i):
            return i
        i = text.rfind("\\boxed", lo, i)
    return -1


def box_content(text: str, start: int) -> str | None:
    """Content of the box opening at ``start`` (nested braces matched); None if it is never closed."""
    open_brace = pos = _BOX_START.match(text, start).end()  # type: ignore[union-attr]
    depth = 1
    while (close := text.find("}", pos)) != -1:  # only "{" lie between pos and the next "}"
        depth += text.count("{", pos, close) - 1
        if depth == 0:
            return text[open_brace:close]
        pos = close + 1
    return None


def last_box(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (nested braces matched); None if there is no box or
    the last one is never closed (truncated output: an earlier box is not the final answer)."""
    start = _box_start(text)
    return None if start == -1 else box_content(text, start)


def _to_int(digits: str) -> int | None:
    """``int(digits)``, or None when it has more significant digits than any score could."""
    body = digits.lstrip("+-").lstrip("0") or "0"
    return int(digits[0] + body if digits[0] in "+-" else body) if len(body) <= _MAX_SCORE_DIGITS else None


def parse_scores(box: str, n: int, score_range: tuple[int, int]) -> tuple[list[int] | None, str | None]:
    """Split a box's content into exactly ``n`` integers within ``score_range``; return (scores, error)."""
    inner = _LATEX_TEXT.sub(r"\1", box).strip()
    parts = [p.strip().strip("*").strip() for p in _SCORE_SEPARATOR.split(inner) if p.strip()]
    if not parts:
        return None, "empty \\boxed{}"
    values = []
    for p in parts:
        if not _INT.fullmatch(p):
            return None, f"non-integer score {p[:20]!r}"
        values.append(_to_int(p))
    if len(values) != n:
        return None, f"expected {n} score{'s' * (n != 1)}, got {len(values)}"
    lo, hi = score_range
    for p, s in zip(parts, values):
        if s is None or not lo <= s <= hi:
            return None, f"score {s if s is not None else p[:20] + '...'} out of range [{lo}, {hi}]"
    return values, None  # type: ignore[return-value]


def _principle_name(head: str) -> str | None:
    """The name in the text between an item marker and its ``(Weight: ...)``, or None if it is not one."""
    if not head:
        return None
    name = head.strip()
    if name[:2] in ("**", "__"):
        name = name[2:].lstrip()
    if name[-2:] in ("**", "__"):
        name = name[:-2].rstrip()
    return None if _NAME_FORBIDDEN.search(name) else name


def parse_principles(text: str) -> list[Principle]:
    """Principles written as ``1. **Name** (Weight: 40%): description`` items, from the criteria section
    if there is one, else from the whole text before the analysis. Items are usually one per line; several on
    one line (``1. A (Weight: 60%): x. 2. B (Weight: 40%): y.``) are split at each item's number."""
    m = _CRITERIA.search(text)
    start = m.end() if m else 0
    a = _ANALYSIS.search(text, start)
    section = text[start : a.start() if a else len(text)]
    # (name, weight match, where the item's marker starts, where its description starts)
    found: list[tuple[str, re.Match[str], int, int]] = []
    previous_end = line_start = 0
    for w in _WEIGHT.finditer(section):
        line_start = section.rfind("\n", previous_end, w.start()) + 1 or line_start
        if previous_end > line_start:  # another weight earlier on this line: look for an item marker after it
            marker = _last(_INLINE_MARKER.finditer(section, previous_end, w.start()))
        else:
            marker = _LINE_MARKER.match(section, line_start, w.start())
        previous_end = w.end()
        name = _principle_name(section[marker.end() : w.start()]) if marker else None
        if name is not None:
            found.append((name, w, marker.start(), _AFTER_WEIGHT.match(section, w.end()).end()))  # type: ignore
    out = []
    for i, (name, w, _, desc_start) in enumerate(found):
        following = found[i + 1][2] if i + 1 < len(found) else len(section)
        line_end = section.find("\n", desc_start, following)
        description = section[desc_start : following if line_end == -1 else line_end].strip()
        weight = float(w.group("weight"))
        out.append(Principle(name, weight / 100 if w.group("pct") or weight > 1 else weight, description))
    return out


def parse_analysis(text: str) -> str:
    """The text after the ``Analysis:`` header and before the final ``Scores`` line (empty if no header)."""
    m = _ANALYSIS.search(text)
    if not m:
        return ""
    end = len(text)
    for s in _SCORES.finditer(text, m.end()):
        end = s.start()
    box = _box_start(text, m.end())
    if box != -1 and end == len(text):
        newline = text.rfind("\n", m.end(), box)
        end = box if newline == -1 else newline
    return text[m.end() : end].strip()


def _on_scores_line(text: str, box: int) -> bool:
    """Whether the box starting at ``box`` follows a ``Scores:`` header with nothing but markup in between."""
    last = _last(_SCORES.finditer(text, 0, box))
    return last is not None and _GAP_BEFORE_BOX.match(text, last.end(), box).end() == box  # type: ignore


def parse_judgement(text: str, n: int, score_range: tuple[int, int] = (1, 10), *, truncated: bool = False) -> Judgement:
    """Parse one generated judgement of ``n`` responses. Scores stay in the order the prompt showed.

    ``truncated``: generation stopped at the token limit (``Completion.finish_reason == "length"``). Then the
    last box counts only if it is complete and sits on the final ``Scores:`` line: a judgement cut off while
    quoting a response's ``\\boxed{7}`` is an error, not a score of 7.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if score_range[0] > score_range[1]:
        raise ValueError(f"score_range must be (low, high) with low <= high, got {score_range}")
    if not text.strip():
        return Judgement(text=text, error="empty output")
    principles, analysis = parse_principles(text), parse_analysis(text)
    start = _box_start(text)
    box = None if start == -1 else box_content(text, start)
    if box is None:
        error = "last \\boxed{ is never closed (truncated output?)" if start != -1 else "no \\boxed{} with scores"
        if truncated:
            error = "cut off at the token limit before the scores"
        return Judgement(text=text, principles=principles, analysis=analysis, error=error)
    if truncated and not _on_scores_line(text, start):
        error = "cut off at the token limit before the scores line (its last box is not on a 'Scores:' line)"
        return Judgement(text=text, principles=principles, analysis=analysis, error=error)
    scores, error = parse_scores(box, n, score_range)
    return Judgement(text=text, principles=principles, analysis=analysis, scores=scores, error=error)


def format_judgement(principles: list[Principle], analysis: str, scores: list[int]) -> str:
    """Write a judgement in the output format :func:`parse_judgement` reads (for teachers and test models)."""
    lines = ["Specific Criteria:"]
    for i, p in enumerate(principles, 1):
        weight = f" (Weight: {round(p.weight * 100)}%)" if p.weight is not None else ""
        lines.append(f"{i}. **{p.name}**{weight}: {p.description}")
    lines += ["", "Analysis:", analysis.strip(), "", f"Scores: \\boxed{{{', '.join(map(str, scores))}}}"]
    return "\n".join(lines)
