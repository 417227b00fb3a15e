"""Reward shaping for RL, off by default: a length penalty within a group, and what an unscored sample gets.

A group is what a reward is compared within: a prompt's completions judged together (TRL's group mode, the
server's buffered group), else the completions of one call or request.

- ``length_penalty`` (default 0: off) subtracts ``length_penalty * (len - shortest) / (longest - shortest)`` from
  each scored reward of a group, lengths in characters: the shortest completion loses nothing, the longest
  ``length_penalty``, so among equally judged completions the shorter one is preferred. Rewards are on [0, 1], so
  0.1 weighs length at a tenth of the scale.
- ``unscored`` is what a completion gets when none of its judgements could be read (fail closed): ``None`` (TRL
  skips it; HTTP protocols that cannot take null need a value), a number, or ``"min"``, the lowest shaped reward of
  its group (``fallback`` when nothing in the group was scored).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

UNSCORED_MIN = "min"


@dataclass(frozen=True)
class Shaping:
    """How rewards of a group are shaped (see the module docs); the defaults change nothing."""

    length_penalty: float = 0.0
    unscored: float | str | None = None
    fallback: float = 0.0
    """What ``unscored="min"`` gives when no completion of the group was scored."""

    def __post_init__(self) -> None:
        p = self.length_penalty
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (math.isfinite(p) and p >= 0):
            raise ValueError(f"length_penalty must be a number >= 0 (0: off), got {p!r}")
        u = self.unscored
        if u is not None and u != UNSCORED_MIN and (isinstance(u, bool) or not isinstance(u, numbers.Real)):
            raise ValueError(f"unscored must be None, a number or {UNSCORED_MIN!r}, got {u!r}")
        if isinstance(u, numbers.Real) and not math.isfinite(u):
            raise ValueError(f"unscored must be a finite number, got {u!r}")

    def apply(self, rewards: Sequence[float | None], lengths: Sequence[int]) -> list[float | None]:
        """One group's rewards (None: unscored) shaped, given the completions' lengths."""
        out = list(rewards)
        scored = [i for i, r in enumerate(out) if r is not None]
        if self.length_penalty and len(scored) > 1:
            shortest, longest = min(lengths[i] for i in scored), max(lengths[i] for i in scored)
            if longest > shortest:
                for i in scored:
                    out[i] -= self.length_penalty * (lengths[i] - shortest) / (longest - shortest)  # type: ignore[operator]
        if self.unscored is None or len(scored) == len(out):
            return out
        if self.unscored == UNSCORED_MIN:
            value = min((out[i] for i in scored), default=self.fallback)  # type: ignore[type-var]
        else:
            value = float(self.unscored)  # type: ignore[arg-type]
        return [value if r is None else r for r in out]
