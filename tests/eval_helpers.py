"""Shared by the grm.eval tests: fixtures tag each response with the score a judge should give it, ``[q8]``."""

from __future__ import annotations

import re
from pathlib import Path

from grm import GRM
from grm.eval import evaluate
from helpers import ScriptedBackend, judge_by, shown_responses

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


def marker(text: str) -> int:
    """The score a response's ``[qN]`` tag asks for; untagged: 5."""
    m = re.search(r"\[q(\d+)\]", text)
    return int(m.group(1)) if m else 5


def marker_grm(**kw) -> GRM:
    """A GRM whose every judgement scores each response by its tag, whatever order it is shown in."""
    return GRM(ScriptedBackend(judge_by(marker)), **kw)


def scripted(score_of_shown) -> tuple[GRM, ScriptedBackend]:
    """A GRM whose every judgement scores the shown responses with ``score_of_shown(responses) -> scores``, and
    its backend (which records the requests)."""

    def script(messages, _):
        return f"Scores: \\boxed{{{', '.join(map(str, score_of_shown(shown_responses(messages))))}}}"

    backend = ScriptedBackend(script)
    return GRM(backend), backend


def marker_scalar(messages, responses) -> list[float]:
    """A scalar reward function that scores each response by its tag."""
    return [float(marker(r)) for r in responses]


def run(bench, data, scorer, **kw):
    """``evaluate`` with few draws and resamples, quietly, seeded with 0 unless given a seed or options (tests of
    unseeded runs pass ``seed=None``)."""
    seed = {} if "seed" in kw or "options" in kw else {"seed": 0}
    kw = {"draws": 4, "n_bootstrap": 50, "progress": False, **seed, **kw}
    return evaluate(bench, data, scorer, **kw)
