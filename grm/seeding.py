"""Seeds: every random choice grm makes derives from a caller's seed through these helpers, so a seeded run repeats.

- :func:`seeded_rng` gives each item (sample, draw...) a random stream of its own, named by the seed and indices;
- :func:`request_seed` gives each engine request a seed of its own, from the run's seed, the generation call it
  belongs to and its position in that call;
- :func:`seed_for` numbers the seeds of repeated calls or consecutive chunks (fresh draws each, reproducible);
- :func:`random_seed` draws the seed of a run the caller left unseeded.
"""

from __future__ import annotations

import random

SEED_SPACE = 2**31
"""Engine seeds lie in ``[0, SEED_SPACE)`` (what every engine accepts)."""


def seeded_rng(*parts: object) -> random.Random:
    """A random generator of its own for ``parts`` (e.g. ``(seed, item_index)``): the same parts, the same stream."""
    return random.Random(":".join(map(str, parts)))


def request_seed(seed: int, call: int, index: int) -> int:
    """The engine seed of request ``index`` of generation call ``call`` in a run seeded with ``seed``."""
    return ((seed + call * 7919) * 1_000_003 + index) % SEED_SPACE


def seed_for(seed: int | None, n: int) -> int | None:
    """The seed of the ``n``-th (0-based) of repeated calls or consecutive chunks seeded with ``seed``: each draws
    afresh, and a re-run draws the same; None (unseeded) stays None."""
    return None if seed is None else seed + n


def random_seed(rng: random.Random | None = None) -> int:
    """A fresh seed for a run the caller left unseeded (from ``rng``, else from Python's global generator)."""
    return random.randrange(SEED_SPACE) if rng is None else rng.randrange(SEED_SPACE)
