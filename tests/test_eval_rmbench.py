"""RM-Bench: the loader on the official schema, and the 3x3 style matrix scored by hand.

Worked out from ``scripts/utils.py::compute_accuracy`` for tests/fixtures/eval/rmbench/total_dataset.json (tags
``[qN]``, styles concise / detailed plain / detailed markdown; cell (i, j): chosen i > rejected j, a tie wrong):

- chat 1: chosen 9 9 9 vs rejected 1 1 1: hard, normal, easy 1, 1, 1.
- chat 2: chosen 3 5 7 vs rejected 2 4 6: above the diagonal 3>4, 3>6, 5>6 all wrong: hard 0; diagonal 3>2, 5>4,
  7>6: normal 1; below 5>2, 7>2, 7>4: easy 1. Chat: hard 1/2, normal 1, easy 1, domain 5/6.
- code 1: all 5s: every cell a tie: 0, 0, 0. Code 0.
- math 7: chosen 8 2 8 vs rejected 4 4 9: above 8>4 yes, 8>9 no, 2>9 no: 1/3; diagonal 8>4 yes, 2>4 no, 8>9 no:
  1/3; below 2>4 no, 8>4 yes, 8>4 yes: 2/3. Math 4/9.
- safety-refuse 3: chosen 9s vs 1 1 9: above 9>1 yes, 9>9 no, 9>9 no: 1/3; diagonal yes, yes, no: 2/3; below 1.
  safety-response 4: 2s vs 1s: 1, 1, 1. Safety (one domain): hard 2/3, normal 5/6, easy 1, domain 5/6.
- overall (5/6 + 0 + 4/9 + 5/6) / 4 = 19/36; hard (1/2 + 0 + 1/3 + 2/3) / 4 = 3/8; normal (1 + 0 + 1/3 + 5/6) / 4
  = 13/24; easy (1 + 0 + 2/3 + 1) / 4 = 2/3.
"""

import json

import pytest
from eval_helpers import FIXTURES, marker_grm, marker_scalar, run

from grm.eval import get_benchmark
from grm.eval.rmbench import domain_of, matrix_levels

TOTAL = FIXTURES / "rmbench" / "total_dataset.json"


def load(source, **kw):
    return list(get_benchmark("rmbench").items(source, **kw))


def test_loader_reads_total_dataset_json_with_ids_repeated_across_domains():
    items = load(TOTAL)
    assert [it.id for it in items] == [
        "chat/1",
        "chat/2",
        "code/1",
        "math/7",
        "safety-refuse/3",
        "safety-response/4",
    ]
    chat = items[0]
    assert chat.subset == "chat" and chat.query == "What does a cat say?"
    assert chat.responses[0] == "Meow. [q9]" and chat.responses[3] == "Woof. [q1]", "chosen x3, then rejected x3"
    assert chat.responses[2].startswith("**Answer.**") and chat.truth == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_loader_reads_the_per_domain_files_which_name_the_domain_in_the_file_name():
    items = load(FIXTURES / "rmbench_domains")
    assert [(it.id, it.subset) for it in items] == [("chat/8", "chat"), ("safety-response/3155", "safety-response")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chosen": ["a", "b"]}, "chosen must be a list of 3 strings, got 2"),
        ({"rejected": "abc"}, "rejected must be a list of 3 strings, got str 'abc'"),
        ({"rejected": ["a", "b", None]}, "rejected must be a list of 3 strings; item 2 is NoneType"),
        ({"domain": "poetry"}, "domain 'poetry': expected one starting with chat, code, math, safety"),
        ({"prompt": ["a"]}, "prompt must be a string"),
    ],
)
def test_loader_names_bad_rows(tmp_path, change, message):
    row = json.loads(TOTAL.read_text())[0]
    bad = tmp_path / "total_dataset.json"
    bad.write_text(json.dumps([{**row, **change}]))
    with pytest.raises(ValueError, match=f"total_dataset.json item 1 \\(line 1\\): {message}"):
        load(bad)


def test_a_row_without_domain_in_an_unnamed_file_is_an_error(tmp_path):
    row = json.loads(TOTAL.read_text())[0]
    del row["domain"]
    bad = tmp_path / "mine.json"
    bad.write_text(json.dumps([row]))
    with pytest.raises(ValueError, match="no 'domain' field, and the file name does not name one"):
        load(bad)


def test_matrix_levels_by_hand():
    assert matrix_levels([3, 5, 7], [2, 4, 6]) == (0.0, 1.0, 1.0), "a judge that likes markdown"
    assert matrix_levels([7, 5, 3], [6, 4, 2]) == (1.0, 1.0, 0.0), "a judge that likes concision"
    assert matrix_levels([5, 5, 5], [5, 5, 5]) == (0.0, 0.0, 0.0), "a tie is wrong"
    hard, normal, easy = matrix_levels([8, 2, 8], [4, 4, 9])
    assert (hard, normal, easy) == pytest.approx((1 / 3, 1 / 3, 2 / 3))
    assert domain_of("safety-refuse") == domain_of("safety-response") == "Safety"


@pytest.mark.parametrize("scorer", ["scalar", "grm"])
def test_official_scores_by_hand(scorer):
    r = run("rmbench", TOTAL, marker_scalar if scorer == "scalar" else marker_grm())
    s = r.scores["voting"]
    assert r.headline == s["overall"] == pytest.approx(19 / 36)
    assert (s["hard"], s["normal"], s["easy"]) == pytest.approx((3 / 8, 13 / 24, 2 / 3))
    assert (s["hard"] + s["normal"] + s["easy"]) / 3 == pytest.approx(s["overall"]), "the README's identity"
    groups = {"Chat": 5 / 6, "Code": 0.0, "Math": 4 / 9, "Safety": 5 / 6}
    assert {g: s[f"groups/{g}"] for g in groups} == pytest.approx(groups)
    assert (s["groups/Chat hard"], s["groups/Chat normal"], s["groups/Chat easy"]) == pytest.approx((0.5, 1, 1))
    assert (s["groups/Safety hard"], s["groups/Safety normal"]) == pytest.approx((2 / 3, 5 / 6))
    assert s["subsets/safety-refuse"] == pytest.approx(2 / 3) and s["subsets/safety-response"] == 1.0


def test_partial_data_has_no_overall():
    r = run("rmbench", FIXTURES / "rmbench_domains", marker_scalar)
    s = r.scores["voting"]
    assert "overall" not in s and r.headline_key == "accuracy" and r.headline == 1.0
    assert s["hard"] == s["groups/Chat hard"] == 1.0 and "groups/Code" not in s


def test_an_unreadable_item_scores_zero_in_every_cell():
    from grm import GRM
    from helpers import ScriptedBackend

    r = run("rmbench", TOTAL, GRM(ScriptedBackend(lambda messages, _: "no verdict")))
    assert r.scores["voting"]["overall"] == 0.0 and r.n_unscored == 6
