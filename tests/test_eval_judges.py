"""grm.eval with other judge formats: Voting@k curves draw whole samples (every pair of a pairwise judge, every
response of a one-at-a-time grader), so any format evaluates as SPCT's does."""

from __future__ import annotations

from grm import GRM
from grm.eval import evaluate
from grm.synthetic import make_examples, write_examples
from helpers import ScriptedBackend


def truth_judge(examples, judge: str):
    """A scripted judge that knows which response is right (and is right in any order shown)."""
    right = {(e.query, r): t == max(e.truth) for e in examples for r, t in zip(e.responses, e.truth)}

    def script(messages, _):
        text = messages[-1]["content"]
        if judge == "pairwise-verdict":
            query = text.split("[User Question]\n")[1].split("\n\n[The Start")[0]
            a = text.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
            b = text.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
            return "[[A]]" if right[(query, a)] else "[[B]]" if right[(query, b)] else "[[C]]"
        query = text.split("###The instruction to evaluate:\n")[1].split("\n\n###Response")[0]
        response = text.split("###Response to evaluate:\n")[1].split("\n\n###")[0]
        return f"Feedback: checked. [RESULT] {5 if right[(query, response)] else 2}"

    return ScriptedBackend(script)


def test_a_pairwise_judge_and_a_one_at_a_time_grader_evaluate_with_voting_curves(tmp_path):
    examples = make_examples(12, seed=4, response_weights=(0, 1, 1, 1))
    data = write_examples(tmp_path / "items.jsonl", examples)
    for judge in ("pairwise-verdict", "prometheus-absolute"):
        rm = GRM(truth_judge(examples, judge), judge=judge)
        cache = tmp_path / f"{judge}.jsonl"
        result = evaluate("synthetic", data, rm, k=4, seed=0, draws=2, n_bootstrap=50, progress=False, cache=cache)
        assert result.headline == 1.0, judge
        again = evaluate("synthetic", data, rm, k=4, seed=0, draws=2, n_bootstrap=50, progress=False, cache=cache)
        assert again.scores == result.scores  # from the cache: the judgements keep which responses they saw
        curve = result.scores["voting"]
        assert set(curve) >= {"overall"} and curve["overall"] == 1.0
        assert result.n_items == 12
