"""User rules (grm.training.rules): loading one by name, the synthetic task's rule, and the rule as a GRPO reward."""

import json

import pytest

from grm import Example, Judgement
from grm.training.rules import RuleReward, load_rule, passes
from grm.training.synthetic import consistent

HEAD = "Specific Criteria:\n- Correct sum (Weight: 100%): 48 + 37: 8 + 7 = 15, 4 + 3 + 1 = 8, so 85.\n\nAnalysis:\n"
SOUND = HEAD + "Response 1: 85 vs 85: right.\nResponse 2: 84 vs 85: wrong.\n\nScores: \\boxed{9, 2}"
SLIP = HEAD + "Response 1: 85 vs 85: wrong.\nResponse 2: 84 vs 85: wrong.\n\nScores: \\boxed{9, 2}"  # right scores
EXAMPLE = Example("What is 48 + 37?", ["85", "84"], [9.0, 2.0], id="e1")


def test_a_rule_is_named_module_colon_function():
    assert load_rule("grm.training.synthetic:consistent") is consistent
    assert load_rule(None) is None and load_rule(consistent) is consistent
    for bad, message in (
        ("grm.training.synthetic", "named 'module:function'"),
        ("grm.training.synthetic:nothing_here", "cannot load the rule"),
        ("no_such_module_xyz:f", "cannot load the rule"),
        ("grm.training.synthetic:KINDS", "not a function of"),
    ):
        with pytest.raises(ValueError, match=message):
            load_rule(bad)


def test_the_synthetic_rule_catches_right_scores_reached_by_a_contradiction():
    assert consistent(Judgement(SOUND, scores=[9, 2]), EXAMPLE)
    assert not consistent(Judgement(SLIP, scores=[9, 2]), EXAMPLE)  # SPCT's rule alone would call it correct


def test_a_rule_that_raises_is_named_with_the_example():
    def broken(judgement, example):
        raise KeyError("boom")

    with pytest.raises(RuntimeError, match="the rule broken failed on example 'e1': KeyError"):
        passes(broken, Judgement("x"), EXAMPLE)


def test_rule_reward_adds_the_weight_when_the_rule_passes_and_takes_it_when_not():
    logged = {}
    reward = RuleReward(consistent, weight=0.5)
    column = [json.dumps(EXAMPLE.to_dict())] * 3
    completions = [SOUND, [{"role": "assistant", "content": SLIP}], "no scores at all"]
    out = reward(completions, example=column, score_range=[[1, 10]] * 3, log_metric=logged.__setitem__)
    assert out == [0.5, -0.5, 0.5]  # unreadable output is SPCT's business (-1 there), not the rule's
    assert logged == {"rule/pass": pytest.approx(2 / 3)}
    assert reward.__name__ == "rule_reward"

    seen = []

    def record(judgement, example):
        seen.append((judgement.scores, judgement.order, example.responses, example.truth))
        return True

    RuleReward(record)([SOUND], example=column[:1])
    assert seen == [([9, 2], [0, 1], ["85", "84"], [9.0, 2.0])]  # scores in the order the prompt showed
    with pytest.raises(ValueError, match="2 completions but 1 examples"):
        reward([SOUND, SOUND], example=column[:1])
    with pytest.raises(ValueError, match="rule_weight must be > 0"):
        RuleReward(consistent, weight=0)
