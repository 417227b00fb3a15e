"""The synthetic judging task: exact ground truth, the teacher's format and error rate, and its benchmark rule."""

from collections import Counter

import pytest

from grm import GRM, parse_judgement
from grm.eval.synthetic import Synthetic
from grm.prompts import PromptTemplate
from grm.training import is_correct, load_examples
from grm.training.synthetic import (
    KINDS,
    RIGHT,
    TEMPLATE,
    WRONG,
    Teacher,
    make_examples,
    read_prompt,
    solve,
    write_examples,
)
from grm.voting import Vote


def independent_answer(query: str):
    """Solve a question without the module's solver, to check the ground truth against."""
    words = query.rstrip("?.").replace(",", "").split()
    numbers = [int(w) for w in words if w.isdigit()]
    if query.startswith("What is"):
        return (numbers[0] + numbers[1],)
    if query.startswith("How many"):
        factors = {("minutes", "hour"): 60, ("seconds", "minute"): 60, ("hours", "day"): 24, ("days", "week"): 7}
        factors |= {("centimetres", "metre"): 100, ("grams", "kilogram"): 1000}
        small, big = words[2], words[-1].removesuffix("s")
        return (numbers[0] * factors[(small, big)],)
    if query.startswith("Sort"):
        return tuple(sorted(numbers))
    return (max(numbers),)


def test_examples_are_deterministic_balanced_and_truthful():
    examples = make_examples(400, 7)
    assert [e.to_dict() for e in examples] == [e.to_dict() for e in make_examples(400, 7)]
    assert [e.to_dict() for e in examples] != [e.to_dict() for e in make_examples(400, 8)]
    assert Counter(e.kind for e in examples) == {kind: 100 for kind in KINDS}
    sizes = Counter(len(e.responses) for e in examples)
    assert set(sizes) == {1, 2, 3, 4} and sizes[2] > sizes[1]
    lone_right = 0
    for e in examples:
        problem = solve(e.query)
        assert problem.kind == e.kind and problem.answer == independent_answer(e.query)
        values = [problem.read(r) for r in e.responses]
        assert e.truth == [RIGHT if v == problem.answer else WRONG for v in values]
        assert len(set(values)) == len(values)  # distinct answers: no tie for best
        if len(e.responses) > 1:
            assert e.truth.count(RIGHT) == 1
        else:
            lone_right += e.truth[0] == RIGHT
    assert 0.3 < lone_right / sizes[1] < 0.7


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="not a synthetic question"):
        solve("What is the capital of France?")
    with pytest.raises(ValueError, match="kinds must be"):
        make_examples(3, 0, kinds=["add", "poetry"])
    with pytest.raises(ValueError, match="error_rate"):
        Teacher(1.5)


@pytest.mark.parametrize("error_rate", [0.0, 0.25])
def test_teacher_writes_parseable_judgements_and_errs_at_its_rate(error_rate):
    examples = make_examples(1200, 3)
    rm = GRM(Teacher(error_rate, seed=1), TEMPLATE)
    rewards = rm.score_batch([(e.query, e.responses) for e in examples], k=2, seed=0)
    judgements = [j for r in rewards for j in r.judgements]
    assert all(j.valid and len(j.principles) == 1 and j.principles[0].weight == 1.0 for j in judgements)
    assert all(j.analysis.count("Response ") == len(j.order) for j in judgements)
    correct = [is_correct(j.scores, e.truth) for e, r in zip(examples, rewards) for j in r.judgements]
    observed = 1 - sum(correct) / len(correct)
    assert abs(observed - error_rate) < 0.03, observed
    # every judgement states the right result unless it slipped, and a slip always names a wrong one
    teacher = Teacher(error_rate, seed=2)
    kinds = Counter()
    for e in examples[:300]:
        out = teacher.judge(e.query, e.responses)
        j = parse_judgement(out.text, len(e.responses), (1, 10))
        kinds[out.error] += 1
        assert is_correct(j.scores, e.truth) == (out.error is None)
        stated = solve(e.query).principle(solve(e.query).answer).description
        assert (j.principles[0].description == stated) == (out.error != "slip")
    assert set(kinds) == ({None} if error_rate == 0 else {None, "slip", "misscore"})


def test_teacher_reads_the_prompt_in_the_shown_order():
    template = PromptTemplate.load(TEMPLATE)
    messages = template.render("What is 12 + 30?", ["41", "It is 42."])
    assert read_prompt(messages) == ("What is 12 + 30?", ["41", "It is 42."])
    text = Teacher(0.0).judge(*read_prompt(messages)).text
    assert "12 + 30: 2 + 0 = 2, 1 + 3 = 4, so 42." in text and text.endswith("\\boxed{2, 9}")
    assert "Response 1: 41 vs 42: wrong." in text and "Response 2: 42 vs 42: right." in text
    assert "58 + 67: 8 + 7 = 15, 5 + 6 + 1 = 12, so 125." in Teacher(0.0).judge("What is 58 + 67?", ["125"]).text
    assert "3 hours = 3 x 60 = 180 minutes." in Teacher(0.0).judge("How many minutes are in 3 hours?", ["180"]).text
    with pytest.raises(ValueError, match="not a prompt of the 'synthetic' template"):
        read_prompt([{"role": "user", "content": "Judge this."}])


def test_written_examples_load_for_training_and_as_a_benchmark(tmp_path):
    path = write_examples(tmp_path / "data.jsonl", make_examples(20, 5))
    examples, stats = load_examples(path, score_range=PromptTemplate.load(TEMPLATE).score_range)
    assert stats.kept == 20 and not stats.rejected
    assert {e.id for e in examples} == {f"5-{i}" for i in range(20)}
    items = list(Synthetic().items(path))
    spec = list(Synthetic().items("seed=5,n=20"))
    assert [(i.id, i.subset, i.truth) for i in items] == [(i.id, i.subset, i.truth) for i in spec]
    assert [i.subset for i in items[:4]] == list(KINDS)


def test_benchmark_rule_for_one_and_several_responses():
    bench = Synthetic()
    assert bench.value(Vote([18.0, 4.0], [9.0, 2.0], 0, [0, 1]), [RIGHT, WRONG]) == 1.0
    assert bench.value(Vote([4.0, 18.0], [2.0, 9.0], 1, [0, 1]), [RIGHT, WRONG]) == 0.0
    assert bench.value(Vote([11.0], [5.5], 0, [0, 1]), [WRONG]) == 1.0  # 5.5 is on the wrong side
    assert bench.value(Vote([13.0], [6.5], 0, [0, 1]), [RIGHT]) == 1.0
    assert bench.value(Vote([13.0], [6.5], 0, [0, 1]), [WRONG]) == 0.0
    assert bench.value(Vote(None, None, None, []), [RIGHT]) == 0.0


def test_teacher_voting_fixes_independent_errors():
    from grm.eval import evaluate

    teacher = GRM(Teacher(0.3, seed=0), TEMPLATE)
    result = evaluate("synthetic", "seed=11,n=80", teacher, k=9, draws=4, n_bootstrap=0, progress=False)
    voting = result.curves["voting"]
    assert 0.55 < voting[1]["overall"] < 0.85 and voting[9]["overall"] > voting[1]["overall"] + 0.15
    assert result.n_invalid == 0 and set(result.subset_sizes) == set(KINDS)


def test_contradiction_is_an_analysis_against_its_own_scores():
    import time

    from grm.training.synthetic import contradicts

    head = "Specific Criteria:\n1. **Correct sum** (Weight: 100%): so 131.\n\nAnalysis:\n"
    lines = "Response 1: 129 vs 131: wrong.\nResponse 2: 131 vs 131: right.\n\n"
    assert not contradicts(head + lines + "Scores: \\boxed{2, 9}")
    assert contradicts(head + lines + "Scores: \\boxed{9, 2}")  # the one called right scores lower
    assert contradicts(head + lines + "Scores: \\boxed{5, 5}")  # a tie is no preference for the right one
    assert not contradicts(head + lines)  # no scores: nothing to contradict (unreadable instead)
    assert contradicts(head + "Response 1: 131 vs 131: wrong.\nResponse 2: 7 vs 131: wrong.\n\nScores: \\boxed{2, 2}")
    assert contradicts(head + "Response 1: 129 vs 131: right.\n\nScores: \\boxed{9}")
    assert not contradicts(head + "Response 1: 1 vs 2: wrong.\nResponse 9: 2 vs 2: right.\n\nScores: \\boxed{2, 9}")
    start = time.process_time()
    assert not contradicts("Response 1: " + ": " * 100_000 + "\\boxed{" + "1," * 100_000)
    assert not contradicts(("Response 1: x: right.\n" * 20_000) + "Scores: \\boxed{2}")
    assert not contradicts("Response 1: " + " vs " * 50_000 + ": righ.\n")
    assert time.process_time() - start < 5
