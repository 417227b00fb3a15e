"""Helpers of the RL protocol tests: a seeded scripted judge and a policy's chat-templated text."""

from __future__ import annotations

import hashlib
import threading

from grm.backends import Completion
from helpers import shown_responses


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
