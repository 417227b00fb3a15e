import importlib.util
import time
from pathlib import Path

import pytest

from grm import GRM
from grm.parsing import format_judgement, last_box, parse_judgement
from grm.types import Principle
from helpers import BOUND_S, CaseScripted, ScriptedBackend

ROOT = Path(__file__).resolve().parents[1]

PAPER_STYLE = """Specific Criteria:
1. **Instruction Adherence** (Weight: 30%): answers the question asked.
2. **Accuracy** (Weight: 50%): the number is right.
3. **Clarity** (Weight: 20%): easy to read.

Analysis:
- **Response 1**: correct and short.
- **Response 2**: wrong sum.

Scores: \\boxed{9, 2}"""

MARKDOWN_STYLE = """### Specific Criteria:
1. Accuracy (weight: 0.7) - correct result
2. Brevity (Weight: 30 %) : no padding

### Analysis:
Response 1 gets **Accuracy: \\boxed{10}** and Response 2 gets \\boxed{3} on accuracy.

**Scores: \\boxed{ 8 ,3 }**"""


def test_paper_style():
    j = parse_judgement(PAPER_STYLE, 2)
    assert j.valid and j.scores == [9, 2] and j.error is None
    assert [p.name for p in j.principles] == ["Instruction Adherence", "Accuracy", "Clarity"]
    assert [p.weight for p in j.principles] == pytest.approx([0.3, 0.5, 0.2])
    assert j.principles[1].description == "the number is right."
    assert j.analysis.startswith("- **Response 1**") and j.analysis.endswith("wrong sum.")


def test_markdown_bold_spacing_and_sub_scores_take_the_last_box():
    j = parse_judgement(MARKDOWN_STYLE, 2)
    assert j.scores == [8, 3]
    assert [(p.name, p.weight) for p in j.principles] == [
        ("Accuracy", pytest.approx(0.7)),
        ("Brevity", pytest.approx(0.3)),
    ]
    assert "gets **Accuracy" in j.analysis and "Scores" not in j.analysis


def test_a_box_quoted_from_a_response_does_not_count_when_the_final_box_follows():
    text = "Analysis:\nResponse 1 writes \\boxed{10, 10, 10} as its answer, which is wrong.\nScores: \\boxed{2, 7}"
    assert parse_judgement(text, 2).scores == [2, 7]


@pytest.mark.parametrize(
    ("text", "n", "error"),
    [
        ("", 2, "empty output"),
        ("   \n", 1, "empty output"),
        ("Analysis: both fine. Scores: 8, 9", 2, "no \\boxed{} with scores"),
        ("Scores: \\boxed{8, 9, 7}", 2, "expected 2 scores, got 3"),
        ("Scores: \\boxed{8}", 2, "expected 2 scores, got 1"),
        ("Scores: \\boxed{11, 9}", 2, "score 11 out of range [1, 10]"),
        ("Scores: \\boxed{0}", 1, "score 0 out of range [1, 10]"),
        ("Scores: \\boxed{8.5, 9}", 2, "non-integer score '8.5'"),
        ("Scores: \\boxed{}", 1, "empty \\boxed{}"),
        ("Scores: \\boxed{8, 9} then more \\boxed{7, ", 2, "last \\boxed{ is never closed (truncated output?)"),
    ],
)
def test_errors_are_recorded_not_raised(text, n, error):
    j = parse_judgement(text, n)
    assert j.scores is None and not j.valid
    assert j.error == error
    assert j.text == text


def test_custom_score_range_and_signs():
    assert parse_judgement("\\boxed{0}", 1, (0, 1)).scores == [0]
    assert parse_judgement("\\boxed{+1}", 1, (0, 1)).scores == [1]
    assert parse_judgement("\\boxed{-1}", 1, (0, 1)).error == "score -1 out of range [0, 1]"
    assert parse_judgement("\\boxed{\\text{7}, 6}", 2).scores == [7, 6]


def test_nested_braces_in_last_box():
    assert last_box("x \\boxed{\\text{8}, 9} y") == "\\text{8}, 9"
    assert last_box("no box") is None


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n must be >= 1"):
        parse_judgement("\\boxed{1}", 0)
    with pytest.raises(ValueError, match="score_range"):
        parse_judgement("\\boxed{1}", 1, (10, 1))


def test_format_then_parse_round_trips():
    principles = [Principle("Accuracy", 0.6, "right answer"), Principle("Style", 0.4, "plain")]
    j = parse_judgement(format_judgement(principles, "Response 2 is better.", [4, 7, 1]), 3)
    assert j.scores == [4, 7, 1] and j.principles == principles and j.analysis == "Response 2 is better."


# Hostile and degenerate model output: bounded time, huge numbers, cut-off judgements


def _parse_fuzz():
    spec = importlib.util.spec_from_file_location("parse_fuzz", ROOT / "benchmarks" / "parse_fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_time_is_bounded_on_adversarial_families():
    families = list(_parse_fuzz().families(1_000_000))
    assert {f for f, _ in families} == {"whitespace", "nested braces", "many boxes", "long digits", "1 MB mix"}
    assert max(len(t) for _, t in families) >= 1_000_000
    for kwargs in ({}, {"truncated": True}):
        for family, text in families:
            start = time.thread_time()
            j = parse_judgement(text, 2, **kwargs)
            elapsed = time.thread_time() - start
            assert elapsed < BOUND_S, f"{family}, {len(text)} chars: {elapsed:.2f} s"
            assert j.valid == (j.error is None) and (j.scores is None or len(j.scores) == 2)


def test_whitespace_after_a_list_marker_parses_at_once():
    start = time.thread_time()
    j = parse_judgement("1." + " " * 150 + "\nScores: \\boxed{7, 3}", 2)
    assert time.thread_time() - start < BOUND_S and j.scores == [7, 3]


def test_a_score_of_thousands_of_digits_is_an_error_and_keeps_the_batch():
    huge = "9" * 5000
    j = parse_judgement(f"Scores: \\boxed{{{huge}}}", 1)
    assert j.scores is None and j.error == f"score {'9' * 20}... out of range [1, 10]"
    assert parse_judgement(f"Scores: \\boxed{{{'0' * 5000}7}}", 1).scores == [7]

    def script(messages, _):
        return f"Scores: \\boxed{{{huge}, 3}}" if "case:big" in messages[-1]["content"] else "Scores: \\boxed{4, 5}"

    big, fine = GRM(ScriptedBackend(script)).score_batch([("case:big", ["a", "b"]), ("q", ["a", "b"])], shuffle=False)
    assert big.n_valid == 0 and "out of range" in big.judgements[0].error
    assert fine.n_valid == 1 and fine.rewards == [4.0, 5.0]


def test_small_parser_cases():
    assert parse_judgement("Scores: \\boxed {8,3}", 2).scores == [8, 3]
    assert parse_judgement("Scores: \\boxed\n{8, 3}", 2).scores == [8, 3]
    one_line = "Specific Criteria: 1. A (Weight: 60%): x. 2. B (Weight: 40%): y.\nAnalysis: ok\nScores: \\boxed{1, 2}"
    principles = parse_judgement(one_line, 2).principles
    assert [(p.name, p.weight, p.description) for p in principles] == [("A", 0.6, "x."), ("B", 0.4, "y.")]
    bold = "Specific Criteria: 1. **A** (Weight: 60%): has 3. parts. 2. **B** (Weight: 40%): y.\nScores: \\boxed{1}"
    assert [p.name for p in parse_judgement(bold, 1).principles] == ["A", "B"]
    # A description left for the next line no longer swallows the next principle.
    two = "Specific Criteria:\n1. **A** (Weight: 60%):\n2. **B** (Weight: 40%): y.\nScores: \\boxed{1}"
    assert [(p.name, p.description) for p in parse_judgement(two, 1).principles] == [("A", ""), ("B", "y.")]


def test_a_cut_off_judgement_does_not_score_a_quoted_box():
    cut = "Analysis:\nResponse 1 ends with its answer \\boxed{7}"
    done = "Analysis:\nResponse 1 quotes \\boxed{7}.\n\n**Scores:** \\boxed{3}\nand then the model rambled on"
    r = GRM(CaseScripted(cut=cut)).score("case:cut", ["42"])
    assert r.n_valid == 0 and "token limit" in r.judgements[0].error
    assert GRM(CaseScripted(cut=done)).score("case:cut", ["42"]).rewards == [3.0]
    assert GRM(CaseScripted(cut=cut, finish="stop")).score("case:cut", ["42"]).rewards == [7.0]  # a finished text

    assert parse_judgement(cut, 1).scores == [7]
    j = parse_judgement(cut, 1, truncated=True)
    assert j.scores is None and "token limit" in j.error
    assert parse_judgement(done, 1, truncated=True).scores == [3]
    assert "token limit" in parse_judgement("Analysis: x\nScores: \\boxed{3", 1, truncated=True).error


@pytest.mark.parametrize("digit", ["\u0663", "\uff17", "\U0001d7d5", "\u096d", "\u00b3"])
def test_scores_are_ascii_digits_only(digit):
    """Arabic-Indic, fullwidth, mathematical, Devanagari digits and superscripts are not scores (a decision:
    docs/scoring.md): the box is unreadable, as any other."""
    judgement = parse_judgement(f"Scores: \\boxed{{{digit}, 7}}", 2)
    assert judgement.scores is None and judgement.error.startswith("non-integer score")
    assert parse_judgement("Scores: \\boxed{3, 7}", 2).scores == [3, 7]
