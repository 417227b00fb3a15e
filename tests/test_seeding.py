"""grm.seeding: the streams and seeds every random choice derives from."""

import random

import numpy as np
import pytest

from grm.seeding import rng_for, seeded_rng


@pytest.mark.parametrize("seed", [0, 1, 7, -3, 2**31 + 5, 10**30])
def test_rng_for_is_the_stream_of_the_integer_seed_itself(seed):
    """What drew from ``random.Random(seed)`` before draws the same numbers through ``rng_for``."""
    ours, python = rng_for(seed), random.Random(seed)
    assert [ours.random() for _ in range(5)] == [python.random() for _ in range(5)]
    assert ours.sample(range(100), 10) == python.sample(range(100), 10)
    assert [rng_for(seed).random() for _ in range(3)] != [seeded_rng(seed).random() for _ in range(3)]


def test_rng_for_takes_integers_only():
    assert rng_for(np.int64(5)).random() == random.Random(5).random()
    for bad in (True, "5", 5.0, None):
        with pytest.raises(TypeError, match="a seed must be an integer"):
            rng_for(bad)
