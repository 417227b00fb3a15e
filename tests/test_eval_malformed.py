"""Malformed benchmark files, for every loader: each bad row is named by its file and line, the rows around it are
read, and an evaluation skips bad rows (``synthetic``, or ``skip_bad_rows=True``) or stops listing them all."""

import json
import logging
import re
import time

import pytest
from eval_helpers import marker_grm, run

from grm import GRM
from grm.eval import BENCHMARKS, get_benchmark, write_report
from grm.eval.base import BadRow
from grm.eval.reading import BadData
from helpers import BOUND_S, ScriptedBackend, judge_by

SPECS = {
    # name: (a valid row i, its response field, its list field or None, its query field, file name)
    "rewardbench": (
        lambda i: {"id": i, "prompt": f"Q{i}?", "chosen": f"a{i} [q9]", "rejected": "b [q2]", "subset": "hep-go"},
        "chosen",
        None,
        "prompt",
        "rb.jsonl",
    ),
    "rewardbench2": (
        lambda i: (
            {"id": i, "prompt": f"Q{i}?", "chosen": [f"a{i} [q9]"], "rejected": ["b", "c", "d"]}
            | {"subset": "Math", "num_correct": 1}
        ),
        "prompt",
        "rejected",
        "prompt",
        "rb2.jsonl",
    ),
    "rmbench": (
        lambda i: (
            {"id": i, "prompt": f"Q{i}?", "chosen": [f"a{i}", "b", "c"], "rejected": ["d", "e", "f"]}
            | {"domain": "chat"}
        ),
        "prompt",
        "chosen",
        "prompt",
        "total_dataset.jsonl",
    ),
    "judgebench": (
        lambda i: (
            {"pair_id": f"p{i}", "source": "mmlu-pro-math", "question": f"Q{i}?", "response_A": f"a{i}"}
            | {"response_B": "b", "label": "A>B"}
        ),
        "response_A",
        None,
        "question",
        "jb.jsonl",
    ),
    "ppe-preference": (
        lambda i: (
            {"question_id": f"q{i}", "prompt": f"Q{i}?", "response_1": f"a{i}", "response_2": "b"}
            | {"winner": "model_a"}
        ),
        "response_1",
        None,
        "prompt",
        "pref.jsonl",
    ),
    "ppe-correctness": (
        lambda i: (
            {"question_id": f"q{i}", "prompt": f"Q{i}?", "response_1": f"a{i}", "response_2": "b"}
            | {"scores": [True, False]}
        ),
        "response_2",
        "scores",
        "prompt",
        "math.jsonl",
    ),
    "realmistake": (
        lambda i: {"input": f"Q{i}?", "llm_response": f"a{i}", "label": "no_error"},
        "llm_response",
        None,
        "input",
        "math_word_problem_generation/gpt4.jsonl",
    ),
    "rmb": (
        lambda i: (
            {"pair_uid": f"u{i}", "conversation_input": [{"role": "user", "content": f"Q{i}?"}]}
            | {"chosen": {"llm_name": "m", "answer": f"a{i}"}, "reject": {"llm_name": "n", "answer": "b"}}
            | {"category_path": "Pairwise_set/Helpfulness/Code/Docs"}
        ),
        "chosen",
        "conversation_input",
        "conversation_input",
        "S1.json",
    ),
    "synthetic": (
        lambda i: (
            {"id": f"s{i}", "query": f"What is {i} + 1?", "responses": [f"{i + 1}", "0"], "truth": [9, 2]}
            | {"kind": "add"}
        ),
        "query",
        "responses",
        "query",
        "synthetic.jsonl",
    ),
}

HOSTILE_TEXT = "line\u2028separator\u2029paragraph\u0085next\rreturn\x1cfile\x1dgroup\x1erecord\x0bvt\x0cff"
"""Characters Python's str.splitlines() breaks lines at: inside a JSONL string they are text, not line ends."""


def broken(name: str, kind: str) -> str | None:
    """Line 2 of the test file: a valid row spoiled as ``kind`` says (None: the spoiling does not apply)."""
    valid, response, listed, query, _ = SPECS[name]
    row = valid(1)
    if kind == "bad JSON":
        return '{"id": 1, "prompt": "unterminated'
    if kind == "not an object":
        return "[1, 2, 3]"
    if kind == "missing field":
        row.pop(response if response in row else query)
    elif kind == "wrong type":
        row[response] = 5 if isinstance(row[response], str) else {"answer": 5}
    elif kind == "query of a wrong type":
        row[query] = 7
    elif kind == "string for a list":
        if listed is None:
            return None
        row[listed] = "ab"
    elif kind == "empty list":
        if listed is None:
            return None
        row[listed] = []
    return json.dumps(row)


KINDS = ["bad JSON", "not an object", "missing field", "wrong type", "query of a wrong type", "string for a list"]
KINDS += ["empty list"]
CASES = [(name, kind) for name in SPECS for kind in KINDS if broken(name, kind) is not None]


def write(tmp_path, name: str, lines: list[str]):
    path = tmp_path / SPECS[name][4]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def hostile(name: str, i: int) -> str:
    """A valid row whose response text holds :data:`HOSTILE_TEXT`."""
    valid, response, *_ = SPECS[name]
    row = valid(i)
    if isinstance(row[response], dict):
        row[response]["answer"] += HOSTILE_TEXT
    elif isinstance(row[response], str):
        row[response] += HOSTILE_TEXT
    return json.dumps(row)


def test_every_benchmark_is_covered():
    assert sorted(SPECS) == sorted(BENCHMARKS)


@pytest.mark.parametrize("name, kind", CASES)
def test_a_bad_row_is_named_by_file_and_line_and_its_neighbours_are_read(tmp_path, name, kind):
    valid = SPECS[name][0]
    path = write(tmp_path, name, [json.dumps(valid(0)), broken(name, kind), hostile(name, 2), json.dumps(valid(3))])
    bench = get_benchmark(name)
    start = time.process_time()
    entries = list(bench.read(path))
    bad = [e for e in entries if isinstance(e, BadRow)]
    assert [b.where for b in bad] == [f"{path} line 2"], "only line 2 is bad; the separators do not split line 3"
    assert bad[0].reason and "\n" not in bad[0].reason
    items = [e for e in entries if not isinstance(e, BadRow)]
    per_row = 2 if name == "judgebench" else 1  # a pair is judged in both orders
    assert len(items) == 3 * per_row
    assert any(HOSTILE_TEXT in text for it in items for text in [*it.responses, str(it.query)])
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))} line 2: "):
        list(bench.items(path))
    assert time.process_time() - start < BOUND_S


def test_the_issue_case_a_string_of_responses_is_not_read_as_its_characters(tmp_path):
    """``"responses": "ab"`` was read as two responses, "a" and "b"."""
    path = write(tmp_path, "synthetic", [json.dumps(SPECS["synthetic"][0](0) | {"responses": "ab"})])
    [bad] = get_benchmark("synthetic").read(path)
    assert str(bad) == f"{path} line 1: responses must be a list of strings, got str 'ab'"


def test_a_huge_row_and_a_huge_list_are_read_in_bounded_time(tmp_path):
    rows = [SPECS["rewardbench"][0](0) | {"chosen": "x" * 20_000_000}, SPECS["rewardbench"][0](1)]
    path = write(tmp_path, "rewardbench", [json.dumps(r) for r in rows])
    start = time.process_time()
    items = list(get_benchmark("rewardbench").items(path))
    assert len(items[0].responses[0]) == 20_000_000 and len(items) == 2
    many = SPECS["rewardbench2"][0](0) | {"rejected": [f"r{i}" for i in range(200_000)]}
    path = write(tmp_path, "rewardbench2", [json.dumps(many), json.dumps(many | {"rejected": ["x"] * 199_999 + [5]})])
    good, bad = get_benchmark("rewardbench2").read(path)
    assert len(good.responses) == 200_001 and "item 199999 is int 5" in str(bad)
    assert time.process_time() - start < BOUND_S


def test_a_json_array_names_the_item_and_its_line(tmp_path):
    rows = [SPECS["rmb"][0](0), {**SPECS["rmb"][0](1), "chosen": "a"}]
    path = tmp_path / "S1.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    [good, bad] = get_benchmark("rmb").read(path)
    assert good.id == "pairwise/u0"
    assert str(bad).startswith(f"{path} item 2 (line 3): expected answers as {{'llm_name', 'answer'}} objects")


def bad_rewardbench(tmp_path):
    valid = SPECS["rewardbench"][0]
    lines = [json.dumps(valid(0)), "{oops", json.dumps(valid(2)), json.dumps(valid(3) | {"chosen": None})]
    return write(tmp_path, "rewardbench", [*lines, json.dumps(valid(4))])


def test_an_evaluation_stops_at_a_bad_row_listing_every_one_and_scoring_nothing_more(tmp_path):
    path = bad_rewardbench(tmp_path)
    backend = ScriptedBackend(judge_by(lambda r: 5))
    with pytest.raises(BadData) as refused:
        run("rewardbench", path, GRM(backend), chunk_size=1)
    message = str(refused.value)
    assert f"{path} line 2: not valid JSON" in message and f"{path} line 4: chosen must be a string" in message
    assert "2 row(s) are not valid rewardbench items" in message and "skip_bad_rows=True" in message
    assert refused.value.count == 2 and len(backend.calls) == 1, "only the item before the first bad row was scored"
    with pytest.raises(BadData, match="1 row"):  # the bad row after the limit's last item is not read
        run("rewardbench", path, marker_grm(), limit=2)


def test_skip_bad_rows_scores_the_others_and_says_which_were_skipped(tmp_path, caplog):
    path = bad_rewardbench(tmp_path)
    with caplog.at_level(logging.WARNING):
        result = run("rewardbench", path, marker_grm(), skip_bad_rows=True)
    assert result.n_items == 3 and result.n_skipped == 2 and result.config["skip_bad_rows"] is True
    assert result.skipped[0].startswith(f"{path} line 2: not valid JSON") and "line 4" in result.skipped[1]
    assert f"skipped {path} line 2" in caplog.text and "skipped 2 bad row(s)" in caplog.text
    assert run("rewardbench", path, marker_grm(), skip_bad_rows=True, limit=2).n_skipped == 1
    report = write_report(result, tmp_path / "report")["markdown"].read_text()
    assert "| rows skipped (not valid items, listed below) | 2 |" in report and f"- `{path} line 4: chosen" in report


def test_the_synthetic_task_skips_bad_rows_by_its_rule(tmp_path):
    valid = SPECS["synthetic"][0]
    path = write(tmp_path, "synthetic", [json.dumps(valid(0)), json.dumps(valid(1) | {"responses": "ab"})])
    result = run("synthetic", path, marker_grm())
    assert (result.n_items, result.n_skipped, result.config["skip_bad_rows"]) == (1, 1, True)
    assert result.to_dict()["skipped"] == [f"{path} line 2: responses must be a list of strings, got str 'ab'"]
    with pytest.raises(BadData):
        run("synthetic", path, marker_grm(), skip_bad_rows=False)
