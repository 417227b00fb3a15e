"""Shared by the grm.eval tests: fixtures tag each response with the score a judge should give it, ``[q8]``."""

from __future__ import annotations

import re
from pathlib import Path

from grm import GRM
from grm.eval import evaluate
from helpers import ScriptedBackend, judge_by

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


def marker(text: str) -> int:
    """The score a response's ``[qN]`` tag asks for; untagged: 5."""
    m = re.search(r"\[q(\d+)\]", text)
    return int(m.group(1)) if m else 5


def marker_grm(**kw) -> GRM:
    """A GRM whose every judgement scores each response by its tag, whatever order it is shown in."""
    return GRM(ScriptedBackend(judge_by(marker)), **kw)


def marker_scalar(messages, responses) -> list[float]:
    """A scalar reward function that scores each response by its tag."""
    return [float(marker(r)) for r in responses]


def run(bench, data, scorer, **kw):
    """``evaluate`` with few draws and resamples, quietly."""
    kw = {"draws": 4, "n_bootstrap": 50, "progress": False, **kw}
    return evaluate(bench, data, scorer, **kw)
