"""Shared fixtures (test helpers are in helpers.py): a tiny real GRM and a tiny random LM built locally (no hub).

Tests of real models must hold on any machine and engine version, whose kernels and random streams differ. So
they assert only what holds there with certainty: the memorized GRM's greedy text (every top logit leads the next
by more than 10), its samples at temperature <= 0.7 (they leave the memorized text with probability below 1e-6),
and, where samples must differ, the random LM's samples (see :func:`random_lm_path`).
"""

from __future__ import annotations

import os

import pytest

from helpers import MEMORIZED

os.environ.setdefault("OMP_NUM_THREADS", "1")
"""The tests' models are tiny: on one torch thread they run faster than on two, which mostly wait on each other
(docs/performance.md#the-main-job); the commands the tests start inherit it. Set it yourself to test with more."""


@pytest.fixture(scope="session")
def memorized_grm_path(tmp_path_factory) -> str:
    """A tiny Qwen2 GRM saved with save_pretrained that judges the MEMORIZED items correctly in any order."""
    from grm.tiny import build_memorized_grm

    path = tmp_path_factory.mktemp("tiny-grm")
    build_memorized_grm(path, MEMORIZED)
    return str(path)


@pytest.fixture(scope="session")
def random_lm_path(tmp_path_factory) -> str:
    """A tiny Qwen2 causal LM with random, untrained weights and a chat template, for tests that need samples
    to differ: at temperature 1 its tokens spread over its vocabulary of about 300 (measured: none above 0.02;
    1,024 samples of 12 tokens all distinct). The likeliest text is the empty one (EOS first, about 0.003), so 8
    samples are all alike with probability below 0.003**7 = 2e-18: samples that differ were seeded differently.
    """

    from grm.tiny import build_causal_lm

    path = tmp_path_factory.mktemp("tiny-random-lm")
    build_causal_lm(path, [q for q, _, _ in MEMORIZED] + ["Tell me something new."])
    return str(path)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module's tests: tiny models run fastest so when other work shares the cores, and
    results match one-thread replicas bitwise (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _judge_registry():
    """Every test (the doc test's snippets too) starts with the built-in judge formats only: a format one test
    registers is gone before the next."""
    from grm import judges

    before = dict(judges._REGISTRY)
    yield
    judges._REGISTRY.clear()
    judges._REGISTRY.update(before)
