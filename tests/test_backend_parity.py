"""One contract: the same requests through transformers, vLLM and HTTP (a real vLLM server) give the same
judgements, rewards and completions on the tiny memorized GRM."""

import os

import pytest
from servers import ENGINE_ARGS, VLLM_ENV, vllm_server

from grm import GRM, GenerationRequest, Sampling
from grm.backends.openai import OpenAIBackend
from grm.backends.transformers import TransformersBackend
from helpers import MEMORIZED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backends(memorized_grm_path, tmp_path_factory):
    for key, value in VLLM_ENV.items():
        os.environ.setdefault(key, value)
    from grm.backends.vllm import VLLMBackend

    with vllm_server(memorized_grm_path, tmp_path_factory.mktemp("vllm") / "server.log") as server:
        engine = VLLMBackend(memorized_grm_path, progress=False, **ENGINE_ARGS)  # starts while the server does
        try:
            yield {
                "transformers": TransformersBackend(memorized_grm_path, progress=False),
                "vllm": engine,
                "http": OpenAIBackend(memorized_grm_path, server.wait(), progress=False),
            }
        finally:
            engine.close()


def test_same_judgements_and_rewards_from_every_backend(backends):
    items = [(q, r) for q, r, _ in MEMORIZED] + [("What is 2+2?", ["5", "4"])]
    results = {name: GRM(b, max_new_tokens=80).score_batch(items, seed=0) for name, b in backends.items()}
    reference = results.pop("transformers")
    assert [r.judgements[0].scores for r in reference] == [t for _, _, t in MEMORIZED] + [[2, 9]]
    for name, rewards in results.items():
        for ref, got in zip(reference, rewards):
            assert got.to_dict() == ref.to_dict(), name


def test_same_completions_for_stops_prefixes_lengths_and_errors(backends):
    msgs = GRM(backends["vllm"]).build_prompt(*MEMORIZED[1][:2])
    requests = [
        GenerationRequest(msgs, 2, Sampling(0.0, 80)),
        GenerationRequest(msgs, 1, Sampling(0.0, 6)),
        GenerationRequest(msgs, 1, Sampling(0.0, 80, stop=("Analysis", "Scores"))),
        GenerationRequest(msgs, 1, Sampling(0.0, 80), prefix="Specific Criteria:\n1. **Accuracy**"),
    ]
    outputs = {name: b.generate(requests) for name, b in backends.items()}
    reference = outputs.pop("transformers")
    assert reference[2][0].stop_string == "Analysis" and reference[1][0].finish_reason == "length"
    for name, got in outputs.items():
        assert [[(c.text, c.finish_reason, c.stop_string) for c in o] for o in got] == [
            [(c.text, c.finish_reason, c.stop_string) for c in o] for o in reference
        ], name
        assert [o[0].n_tokens for o in got[:2]] == [o[0].n_tokens for o in reference[:2]], name
