"""End to end through GRM.from_pretrained on a tiny Qwen2 model built and saved locally."""

import pytest
import torch

from grm import GRM, GenerationRequest, Sampling
from grm.backends.transformers import TransformersBackend
from helpers import MEMORIZED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rm(memorized_grm_path):
    return GRM.from_pretrained(memorized_grm_path, max_new_tokens=80, progress=False, batch_size=4)


def test_greedy_scores_real_generations(rm):
    rewards = rm.score_batch([(q, r) for q, r, _ in MEMORIZED], seed=0)
    for (_, _, truth), r in zip(MEMORIZED, rewards):
        assert r.n_valid == 1, r.judgements[0].text
        assert r.judgements[0].scores == truth
        assert r.judgements[0].principles[0].name == "Accuracy"
        assert r.judgements[0].n_tokens > 10
    assert [r.best for r in rewards] == [0, 1, 0]


def test_voting_with_shuffles_maps_scores_back(rm):
    q, responses, truth = MEMORIZED[1]
    r = rm.score(q, responses, k=6, seed=5)
    assert {tuple(j.order) for j in r.judgements} == {(0, 1), (1, 0)}
    valid = [j for j in r.judgements if j.valid]
    assert len(valid) >= 5  # sampling at 0.5 from a near-certain model
    assert all(j.scores == truth for j in valid)
    assert r.rewards == [float(truth[0] * len(valid)), float(truth[1] * len(valid))] and r.best == 1


def test_backend_batches_and_copies_greedy_rows(memorized_grm_path):
    backend = TransformersBackend(memorized_grm_path, progress=False, batch_size=2)
    rm = GRM(backend, max_new_tokens=60)
    msgs = rm.build_prompt(*MEMORIZED[0][:2])
    out = backend.generate(
        [
            GenerationRequest(msgs, 3, Sampling(0.0, 60)),
            GenerationRequest(rm.build_prompt(*MEMORIZED[2][:2]), 2, Sampling(0.7, 60, seed=1)),
        ]
    )
    assert [len(o) for o in out] == [3, 2]
    assert out[0][0].text == out[0][1].text == out[0][2].text
    assert all(c.finish_reason == "stop" for o in out for c in o)
    assert out[0][0].text.endswith("\\boxed{9, 2}") and all(c.text.endswith("\\boxed{8}") for c in out[1])


def test_seeded_samples_repeat_and_leave_the_callers_rng_alone(random_lm_path):
    backend = TransformersBackend(random_lm_path, progress=False, batch_size=8)
    msgs = [{"role": "user", "content": "Tell me something new."}]

    def texts(seed):
        return [c.text for c in backend.generate([GenerationRequest(msgs, 8, Sampling(1.0, 12, seed=seed))])[0]]

    state = torch.random.get_rng_state()
    first = texts(1)
    assert len(set(first)) > 1, "the random LM's samples differ unless seeded alike (conftest.random_lm_path)"
    assert texts(1) == first
    assert texts(2)[:7] == first[1:]  # sample i of a request seeded s has the seed s + i
    assert torch.equal(state, torch.random.get_rng_state())


def test_length_limits(memorized_grm_path):
    backend = TransformersBackend(memorized_grm_path, progress=False)
    msgs = GRM(backend).build_prompt(*MEMORIZED[0][:2])
    cut = backend.generate([GenerationRequest(msgs, 1, Sampling(0.0, 5))])[0][0]
    assert cut.finish_reason == "length" and cut.n_tokens == 5
    too_long = [{"role": "user", "content": "word " * 5000}]
    failed = backend.generate([GenerationRequest(too_long, 2)])[0]
    assert all(c.error and "context is 4096" in c.error for c in failed)
    r = GRM(backend).score("word " * 5000, ["a"])
    assert r.rewards is None and "context" in r.judgements[0].error


def test_backend_option_errors(memorized_grm_path):
    with pytest.raises(ValueError, match="batch_size"):
        TransformersBackend(memorized_grm_path, batch_size=0)
    with pytest.raises(ValueError, match="unknown dtype"):
        TransformersBackend(memorized_grm_path, dtype="float33")
    with pytest.raises(ValueError, match="unknown backend"):
        GRM.from_pretrained(memorized_grm_path, backend="nope")
