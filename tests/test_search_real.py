"""Search through real parts: a tiny transformers policy continuing partial answers, a tiny PRM, a tiny GRM."""

from __future__ import annotations

import pytest
from test_search import ScriptedPolicy

from grm import GRM, GenerationRequest, Sampling
from grm.backends.transformers import TransformersBackend
from grm.search import GRMVerifier, Policy, PRMVerifier, beam_search, best_of_n
from grm.search.prm import aggregate
from grm.tiny import build_causal_lm, build_tiny_prm, save, teach

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


PROBLEM = "Compute (2 + 3) * 2."
STEPS = ["Step 1: 2 + 3 = 5", "Step 2: 5 * 2 = 10", "The answer is \\boxed{10}"]
WRONG = ["Step 1: 2 + 3 = 6", "Step 2: 6 * 2 = 12", "The answer is \\boxed{12}"]
OTHER, OTHER_STEPS = "Compute 4 - 1.", ["Step 1: 4 - 1 = 3", "The answer is \\boxed{3}"]


@pytest.fixture(scope="module")
def policy_backend(tmp_path_factory):
    """A tiny causal LM taught the step-by-step solutions of two problems (greedy decoding repeats them)."""
    path = tmp_path_factory.mktemp("tiny-policy")
    prompts = [[{"role": "user", "content": PROBLEM}], [{"role": "user", "content": OTHER}]]
    targets = ["\n\n".join(STEPS), "\n\n".join(OTHER_STEPS)]
    model, tokenizer = build_causal_lm(path, [PROBLEM, OTHER, *targets, *WRONG])
    teach(model, tokenizer, prompts, targets, steps=100)
    save(model, tokenizer, path)
    return TransformersBackend(str(path), progress=False)


MIXED = [STEPS[0], WRONG[1], WRONG[2]]


@pytest.fixture(scope="module")
def prm_examples():
    return [(PROBLEM, STEPS, [True] * 3), (PROBLEM, WRONG, [False] * 3), (PROBLEM, MIXED, [True, False, False])]


def test_transformers_backend_stops_at_strings_and_continues_a_prefix(policy_backend):
    msgs = [{"role": "user", "content": PROBLEM}]
    stop = Sampling(0.0, 64, stop=("\n\n",))
    first, second, last, whole, eq = policy_backend.generate(
        [
            GenerationRequest(msgs, 2, stop),
            GenerationRequest(msgs, 1, stop, prefix=STEPS[0] + "\n\n"),
            GenerationRequest(msgs, 1, stop, prefix=STEPS[0] + "\n\n" + STEPS[1] + "\n\n"),
            GenerationRequest(msgs, 1, Sampling(0.0, 64)),
            GenerationRequest(msgs, 1, Sampling(0.0, 64, stop=(" = ", "+"))),
        ]
    )
    tok = policy_backend.tokenizer
    assert [c.text for c in first] == [STEPS[0]] * 2 and first[0].stop_string == "\n\n"
    assert first[0].n_tokens == len(tok(STEPS[0] + "\n\n", add_special_tokens=False)["input_ids"])
    assert second[0].text == STEPS[1] and second[0].stop_string == "\n\n"
    assert last[0].text == STEPS[2] and last[0].stop_string is None and last[0].finish_reason == "stop"
    assert whole[0].text == "\n\n".join(STEPS) and whole[0].stop_string is None
    assert eq[0].text == "Step 1: 2 " and eq[0].stop_string == "+"  # the earliest of several stop strings


def test_beam_search_with_a_real_policy_and_prm(policy_backend, prm_examples, tmp_path):
    prm = PRMVerifier.from_pretrained(build_tiny_prm(tmp_path / "prm", prm_examples), aggregate="min")
    policy = Policy(policy_backend, temperature=0.0, max_step_tokens=32, max_new_tokens=64)
    r, r2 = beam_search(policy, [PROBLEM, OTHER], prm, n=2, m=2, progress=False)
    assert r.answer == "10" and r.text == "\n\n".join(STEPS) and r2.answer == "3"
    tok = policy_backend.tokenizer
    per_solution = len(tok("\n\n".join(STEPS), add_special_tokens=False)["input_ids"]) + 1  # and EOS
    assert r.policy_tokens == 2 * per_solution  # n/m = 1 beam extended m = 2 times per step
    assert r.verifier_tokens == 0 and r.scores[0] > 0.5


@pytest.mark.parametrize("head", ["causal", "token_classification"])
def test_prm_rates_steps_as_taught(head, prm_examples, tmp_path):
    path = build_tiny_prm(tmp_path / head, prm_examples, head=head)
    prm = PRMVerifier.from_pretrained(path, head=head, aggregate="mean")
    good, bad, mix = prm.step_scores([(PROBLEM, "\n\n".join(s)) for s in (STEPS, WRONG, MIXED)])
    assert all(p > 0.9 for p in good) and all(p < 0.1 for p in bad)
    assert mix[0] > 0.5 > mix[1]
    candidates = ["\n\n".join(STEPS), "\n\n".join(MIXED), ""]
    v = prm.verify_batch([(PROBLEM, candidates)])[0]
    assert v.scores[:2] == pytest.approx([aggregate(good, "mean"), aggregate(mix, "mean")], abs=1e-5)
    assert v.scores[2] == 0.0 and v.n_failed == 1  # no step to rate
    with pytest.raises(ValueError, match="must be a single token"):
        PRMVerifier(prm.model, prm.tokenizer, head=head, step_tag="Step 1")


def test_best_of_n_with_a_real_grm_verifier(memorized_grm_path):
    rm = GRM.from_pretrained(memorized_grm_path, max_new_tokens=80, progress=False)
    policy = Policy(ScriptedPolicy({"What is 2+2?": [["5"], ["4"]]}))
    [r] = best_of_n(policy, ["What is 2+2?"], GRMVerifier(rm, n_max=2), n=2, select="max")
    # the tiny GRM scores "4" 9 and "5" 2 (see conftest.MEMORIZED), mapped from 1..10 to [0, 1]
    assert r.text == "4" and r.scores == pytest.approx([1 / 9, 8 / 9])
    assert r.verifier_tokens > 10 and r.verifier_failed == 0
