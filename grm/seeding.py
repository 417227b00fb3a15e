"""Seeds: every random choice grm makes derives from a caller's seed through these helpers, so a seeded run repeats.

- :func:`item_seed` gives each item of a job a seed of its own, from the job's seed and the item's identity in the
  job (its row index, its id), never from its place in a chunk or batch: an item's result is the same whatever
  else is scored with it, however the job is chunked, and when an interrupted job resumes;
- :func:`seeded_rng` gives each item (sample, draw...) a random stream of its own, named by the seed and indices;
- :func:`rng_for` gives what draws everything from one integer seed (a generated data set, a call's chunking) the
  stream of that seed itself;
- :func:`request_seed` gives each engine request a seed of its own, from a seed (an item's, a run's), the
  generation call it belongs to and an index in that call; an engine gives sample ``i`` of a request seeded
  ``s`` the seed ``s + i`` (vLLM's convention, which every grm backend follows);
- :func:`seed_for` numbers the seeds of repeated calls or consecutive chunks (fresh draws each, reproducible);
- :func:`random_seed` draws the seed of a run the caller left unseeded.
"""

from __future__ import annotations

import numbers
import random

import numpy as np

SEED_SPACE = 2**31
"""Engine seeds lie in ``[0, SEED_SPACE)`` (what every engine accepts)."""


def item_seed(seed: int, key: int | str) -> int:
    """The seed of the item known as ``key`` in a job seeded with ``seed``: a stable function of the two (the same
    in every process and on every machine), in ``[0, SEED_SPACE)``. ``key`` names the item in the whole job: its
    row index in the input, its id; an integer and the string of its digits are different keys."""
    if isinstance(key, bool) or not isinstance(key, numbers.Integral | str):
        raise TypeError(f"an item key must be an integer or a string, got {type(key).__name__} {key!r:.60}")
    return random_seed(seeded_rng(seed, "item", repr(int(key)) if isinstance(key, numbers.Integral) else repr(key)))


def seeded_rng(*parts: object) -> random.Random:
    """A random generator of its own for ``parts`` (e.g. ``(seed, item_index)``): the same parts, the same stream."""
    return random.Random(":".join(map(str, parts)))


def rng_for(seed: int) -> random.Random:
    """The random stream of the integer ``seed`` itself (Python's ``random.Random(seed)``), for what draws everything
    from one seed: the synthetic task's examples, a GRM verifier call's chunking. :func:`seeded_rng` names a stream
    by several parts and gives another stream for the same seed, so each use keeps the stream it always drew from."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"a seed must be an integer, got {type(seed).__name__} {seed!r:.60}")
    return random.Random(int(seed))


def numpy_rng(*parts: int) -> np.random.Generator:
    """NumPy's random generator of ``parts`` (e.g. ``(seed,)`` or ``(seed, k, draw)``: non-negative integers), for
    the vectorised draws of bootstrap intervals and Voting@k subsets: the same parts, the same stream
    (``np.random.default_rng(list(parts))``, which for one part is ``default_rng(seed)``)."""
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, numbers.Integral):
            raise TypeError(f"a seed part must be an integer, got {type(part).__name__} {part!r:.60}")
    return np.random.default_rng([int(p) for p in parts])


def seed_torch(seed: int) -> None:
    """Seed torch's global generator (a new model's initial weights) with ``seed``."""
    import torch

    torch.manual_seed(seed)


def request_seed(seed: int, call: int, index: int) -> int:
    """The engine seed of request ``index`` of generation call ``call`` of what is seeded with ``seed`` (an item,
    a run)."""
    return ((seed + call * 7919) * 1_000_003 + index) % SEED_SPACE


def seed_for(seed: int | None, n: int) -> int | None:
    """The seed of the ``n``-th (0-based) of repeated calls or consecutive chunks seeded with ``seed``: each draws
    afresh, and a re-run draws the same; None (unseeded) stays None."""
    return None if seed is None else seed + n


def random_seed(rng: random.Random | None = None) -> int:
    """A fresh seed for a run the caller left unseeded (from ``rng``, else from Python's global generator)."""
    return random.randrange(SEED_SPACE) if rng is None else rng.randrange(SEED_SPACE)
