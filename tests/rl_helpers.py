"""Helpers of the RL protocol tests: a seeded scripted judge and a policy's chat-templated text."""

from __future__ import annotations

import hashlib
import re
import threading

from grm.backends import Completion
from helpers import ScriptedBackend, shown_responses


def seeded_score(response: str, seed: int | None) -> int:
    """A 1-10 score of ``response`` that depends on the sample's seed as well (None: greedy)."""
    return 1 + int(hashlib.sha256(f"{response}|{seed}".encode()).hexdigest(), 16) % 10


class SeededJudge:
    """A backend whose sample ``i`` of a request seeded ``s`` scores each shown response by
    ``seeded_score(response, s + i)``, as seeded engines promise; counts the judgements it wrote (``judgements``) and
    records the shown response lists (``shown``)."""

    def __init__(self) -> None:
        self.judgements = 0
        self.shown: list[list[str]] = []
        self.lock = threading.Lock()

    def generate(self, requests):
        out = []
        for r in requests:
            shown = shown_responses(r.messages)
            seeds = [None] * r.n if r.sampling.temperature == 0 else [r.sampling.seed + j for j in range(r.n)]
            texts = [
                "Analysis:\nseeded.\n\nScores: \\boxed{" + ", ".join(str(seeded_score(x, s)) for x in shown) + "}"
                for s in seeds
            ]
            with self.lock:
                self.judgements += r.n
                self.shown.append(shown)
            out.append([Completion(t, 9, "stop") for t in texts])
        return out


def chatml(user: str, system: str = "You are helpful.") -> str:
    """A policy prompt as a ChatML template writes it, with the generation prompt."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


_PAIR = re.compile(
    r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End of Assistant A's Answer\]\n\n"
    r"\[The Start of Assistant B's Answer\]\n(.*?)\n\[The End of Assistant B's Answer\]",
    re.S,
)


def shown_pair(messages: list[dict[str, str]]) -> tuple[str, str]:
    """The two answers a ``pairwise-verdict`` prompt shows, A then B."""
    a, b = _PAIR.search(messages[-1]["content"]).groups()
    return a, b


def longer_wins(messages: list[dict[str, str]], _: int = 0) -> str:
    """A ``pairwise-verdict`` judgement preferring the longer answer (``[[C]]``, a tie, for equal lengths)."""
    a, b = shown_pair(messages)
    return f"Compared.\n\n{'[[C]]' if len(a) == len(b) else '[[A]]' if len(a) > len(b) else '[[B]]'}"


class LongerWins(ScriptedBackend):
    """A pairwise judge by :func:`longer_wins`; records the pairs it was shown (``pairs``)."""

    def __init__(self) -> None:
        super().__init__(self.verdict)
        self.pairs: list[tuple[str, str]] = []

    def verdict(self, messages, j):
        self.pairs.append(shown_pair(messages))
        return longer_wins(messages, j)
