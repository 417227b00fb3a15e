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


def test_numpy_and_torch_draws_go_through_grm_seeding():
    import numpy as np
    import torch

    from grm.seeding import numpy_rng, seed_torch

    assert numpy_rng(5).random() == np.random.default_rng(5).random()  # the stream it always was
    assert numpy_rng(5, 2, 1).random() == numpy_rng(5, 2, 1).random() != numpy_rng(5, 2, 0).random()
    with pytest.raises(TypeError, match="a seed part must be an integer"):
        numpy_rng(1.5)
    seed_torch(3)
    first = torch.rand(2)
    seed_torch(3)
    assert torch.equal(first, torch.rand(2))
