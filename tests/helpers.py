"""Helpers tests import: the tiny GRM's memorized items, scripted backends for pipeline and hostile-input tests,
prompt readers, the time bound of a hostile input.

Fixtures stay in ``conftest.py`` (pytest finds them there); everything a test imports by name lives here.
"""

from __future__ import annotations

import re
import time
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


BOUND_S = 5.0
"""CPU seconds (of the calling thread, so that other processes on a shared machine do not count) any one parse or
escape of a hostile input may take: linear-time code takes well under half a second on 1 MB here, while the parser
of 4aa61f9 took 12 s on 150 spaces and more than 10 s on 242 characters."""


def by_length(response: str) -> int:
    """A 1-10 score that grows with the response's length."""
    return min(10, 1 + len(response))


class CaseScripted(ScriptedBackend):
    """Scores by length; raises for a prompt holding ``case:boom``; answers ``cut`` with ``finish`` for a
    prompt holding ``case:cut`` (sleeping ``delay`` seconds per call first)."""

    def __init__(self, delay: float = 0.0, cut: str = "", finish: str = "length") -> None:
        super().__init__(judge_by(by_length))
        self.delay, self.cut, self.finish = delay, cut, finish

    def generate(self, requests):
        time.sleep(self.delay)
        if any("case:boom" in r.messages[-1]["content"] for r in requests):
            raise RuntimeError("engine failure on case:boom")
        out = super().generate(requests)
        for r, completions in zip(requests, out):
            if "case:cut" in r.messages[-1]["content"]:
                completions[:] = [Completion(self.cut, 50, self.finish) for _ in completions]
        return out
