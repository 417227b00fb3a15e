"""Helpers tests import: the tiny GRM's memorized items, a scripted backend for pipeline tests, prompt readers.

Fixtures stay in ``conftest.py`` (pytest finds them there); everything a test imports by name lives here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from grm.backends import Completion, GenerationRequest

# (query, responses, scores) the tiny GRM memorizes; tests that use it score exactly these.
MEMORIZED = [
    ("What is 2+2?", ["4", "5"], [9, 2]),
    ("Capital of France?", ["Lyon", "Paris"], [3, 9]),
    ("Say hi.", ["hello"], [8]),
]

_RESPONSE = re.compile(r"^\[The Start of Response (\d+)\]\n(.*?)\n\[The End of Response \1\]$", re.S | re.M)


def shown_responses(messages: list[dict[str, str]]) -> list[str]:
    """The responses in the order a rendered prompt shows them."""
    return [m.group(2) for m in _RESPONSE.finditer(messages[-1]["content"])]


class ScriptedBackend:
    """A Backend whose completions come from ``script(messages, sample_index) -> text``; records every call."""

    def __init__(self, script: Callable[[list[dict[str, str]], int], str]) -> None:
        self.script = script
        self.calls: list[list[GenerationRequest]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        self.calls.append(list(requests))
        return [[Completion(self.script(r.messages, j), 7, "stop") for j in range(r.n)] for r in requests]


def judge_by(score_of: Callable[[str], int]) -> Callable[[list[dict[str, str]], int], str]:
    """A script that scores each shown response with ``score_of(response_text)``."""

    def script(messages: list[dict[str, str]], _: int) -> str:
        scores = [score_of(r) for r in shown_responses(messages)]
        return (
            "Specific Criteria:\n1. **Length** (Weight: 100%): longer is better.\n\nAnalysis:\nBy length.\n\n"
            f"Scores: \\boxed{{{', '.join(map(str, scores))}}}"
        )

    return script
