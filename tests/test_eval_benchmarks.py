"""Benchmark loaders on fixtures in each benchmark's real format (RMB's quirks included), and the readers."""

import json
import shutil
from pathlib import Path

import pytest

from grm.eval import DatasetUnavailable, get_benchmark
from grm.eval.base import rows

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
RMB_CLONE = FIXTURES / "rmb_clone"


def load(name, source, **kw):
    return list(get_benchmark(name).items(source, **kw))


def test_rmb_reads_a_clone_as_it_is():
    items = {it.id: it for it in load("rmb", RMB_CLONE)}
    # only RMB_dataset/ is read (not eval/result/*.json); pair and BoN uids overlap, so ids carry the set
    assert sorted(items) == sorted([f"pairwise/{u}" for u in "012345"] + [f"bon/{u}" for u in "0123"]), (
        "uids as strings, keyed on (set, uid)"
    )
    assert items["pairwise/0"].query != items["bon/0"].query

    # category_path is the subset; folder and file names have spaces
    role_play = items["pairwise/2"]
    assert role_play.subset == "Pairwise_set/Helpfulness/Role Playing/General Character"
    assert [m["role"] for m in role_play.query] == ["user", "assistant", "user"]
    assert all(set(m) == {"role", "content"} for m in role_play.query), "language dropped"
    assert role_play.responses[0].startswith("Buried under") and role_play.truth == [1.0, 0.0]

    assert items["pairwise/3"].responses[1] == "\n\n  \n", "a whitespace-only reject is kept verbatim"
    assert items["pairwise/4"].query == [{"role": "user", "content": "Write an insult about my neighbour."}]
    assert items["pairwise/1"].responses[0] == items["pairwise/1"].responses[1], "identical chosen/reject kept"
    assert "今天天气很好" in items["pairwise/5"].query[0]["content"]

    bon = items["bon/1"]
    assert bon.subset == "BoN_set/Helpfulness/Closed QA/OptionBased"
    assert bon.truth == [1.0, 0.0, 0.0, 0.0] and bon.responses[0] == bon.responses[1] == "A) 7 [q7]"
    assert len(items["bon/3"].query) == 3


def test_rmb_reads_a_subfolder_or_one_file_and_rejects_foreign_json(tmp_path):
    pairwise = load("rmb", RMB_CLONE / "RMB_dataset" / "Pairwise_set")
    assert sorted(it.id for it in pairwise) == [f"pairwise/{u}" for u in "012345"]
    s2 = load("rmb", RMB_CLONE / "RMB_dataset" / "BoN_set" / "Harmlessness" / "S2.json")
    assert [it.id for it in s2] == ["bon/2", "bon/3"]
    with pytest.raises(
        ValueError, match="Some-RM_result.json item 1 \\(line 2\\): missing field\\(s\\) \\['conversation_input'"
    ):
        load("rmb", RMB_CLONE / "eval")  # the authors' result files are not data
    bad = tmp_path / "bad.json"
    bad.write_text('[{"uid": "1"}]')
    with pytest.raises(ValueError, match="neither 'pair_uid' nor 'bon_uid'"):
        load("rmb", bad)
    row = json.loads((RMB_CLONE / "RMB_dataset" / "BoN_set" / "Harmlessness" / "S2.json").read_text())[0]
    bad.write_text(json.dumps([{**row, "category_path": "BoN_set/Fun/S2"}]))
    with pytest.raises(ValueError, match="category_path 'BoN_set/Fun/S2'"):
        load("rmb", bad)
    bad.write_text(json.dumps([{**row, "loser_list": []}]))
    with pytest.raises(ValueError, match="loser_list must be a non-empty list"):
        load("rmb", bad)
    with pytest.raises(DatasetUnavailable, match="Zhou-Zoey/RMB-Reward-Model-Benchmark"):
        load("rmb", tmp_path / "no-clone")


def test_rewardbench_loader_checks_subsets():
    items = load("rewardbench", FIXTURES / "rewardbench.jsonl")
    assert [it.id for it in items] == [str(i) for i in range(1, 9)]
    assert items[0].responses == ["Red. [q9]", "Purple. [q3]"] and items[0].truth == [1.0, 0.0]
    assert items[6].subset == "math-prm"


def test_rewardbench_unknown_subset(tmp_path):
    bad = tmp_path / "rb.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "subset": "chess", "id": 1}) + "\n")
    with pytest.raises(ValueError, match="rb.jsonl line 1: unknown subset 'chess'"):
        load("rewardbench", bad)
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a", "subset": "chess"}) + "\n")
    with pytest.raises(ValueError, match="missing field\\(s\\) \\['rejected'\\]"):
        load("rewardbench", bad)


def test_ppe_preference_skips_ties_and_keeps_ids_unique():
    items = load("ppe-preference", FIXTURES / "ppe_preference.jsonl")
    assert [it.id for it in items] == ["qa1", "qa2", "qa2#2"]
    assert [it.truth for it in items] == [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    assert [it.subset for it in items] == ["English", "English", "Chinese"]


def test_ppe_correctness_reads_numbered_responses_from_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "ppe"
    folder.mkdir()
    shutil.copy(FIXTURES / "ppe_correctness" / "math.jsonl", folder)
    rows = [{"question_id": "g1", "prompt": "Q?", **{f"response_{i}": f"r{i}" for i in range(1, 12)}}]
    rows[0]["scores"] = [i == 10 for i in range(1, 12)]
    pq.write_table(pa.Table.from_pylist(rows), folder / "gpqa.parquet")
    items = load("ppe-correctness", folder)
    assert [(it.id, it.subset) for it in items] == [("gpqa:g1", "gpqa"), ("math:m1:a", "math"), ("math:m1:b", "math")]
    assert items[0].responses == [f"r{i}" for i in range(1, 12)], "response_10 sorts after response_9"
    assert items[0].truth[9] == 1.0 and sum(items[0].truth) == 1.0
    assert items[1].truth == [1.0, 0.0, 0.0, 1.0]
    lone = tmp_path / "lone.jsonl"  # best-of-1 would count as right whatever the scores
    lone.write_text(json.dumps({"question_id": "g2", "prompt": "Q?", "response_1": "r", "scores": [False]}) + "\n")
    with pytest.raises(ValueError, match="lone.jsonl line 1: best-of-K needs two or more responses, got 1"):
        load("ppe-correctness", lone)


def test_the_best_response_rule_refuses_a_lone_response():
    from grm.voting import Vote

    rewardbench = get_benchmark("rewardbench")
    assert rewardbench.value(Vote([9.0, 2.0], [9.0, 2.0], 0, [0]), [1.0, 0.0]) == 1.0
    assert rewardbench.value(Vote([2.0, 9.0], [2.0, 9.0], 1, [0]), [1.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="rewardbench: the best-response rule needs two or more responses, got 1"):
        rewardbench.value(Vote([2.0], [2.0], 0, [0]), [1.0])


def test_realmistake_reads_the_unzipped_data_and_both_label_names(tmp_path):
    items = load("realmistake", FIXTURES / "realmistake")
    assert [it.id for it in items] == [
        "answerability_classification/Llama-2-70b-chat-hf/0",
        "answerability_classification/Llama-2-70b-chat-hf/1",
        "answerability_classification/Llama-2-70b-chat-hf/2",
        "math_word_problem_generation/gpt-4-0613/0",
        "math_word_problem_generation/gpt-4-0613/1",
        "math_word_problem_generation/gpt-4-0613/2",
    ], "data/example.jsonl (the paper's examples) is not read"
    assert [it.truth for it in items[:3]] == [[1.0], [0.0], [1.0]]
    hub_style = tmp_path / "finegrained_fact_verification" / "gpt4.jsonl"
    hub_style.parent.mkdir()
    hub_style.write_text(json.dumps({"input": "q", "llm_response": "a", "error_label": "error"}) + "\n")
    [item] = load("realmistake", hub_style)
    assert (item.subset, item.truth, item.responses) == ("finegrained_fact_verification", [0.0], ["a"])
    hub_style.write_text(json.dumps({"input": "q", "llm_response": "a", "error_label": "maybe"}) + "\n")
    with pytest.raises(ValueError, match="label 'maybe'; expected 'error' or 'no_error'"):
        load("realmistake", hub_style)


def test_readers_name_bad_rows_and_missing_data(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"a": 1}\n{not json\n')
    good, broken = rows(bad)
    assert (good.where, good.row, good.index, good.origin) == (f"{bad} line 1", {"a": 1}, 0, "x.jsonl")
    assert broken.where == f"{bad} line 2" and broken.row is None and broken.error.startswith("not valid JSON")
    arr = tmp_path / "x.json"
    arr.write_text('"a": 1')
    with pytest.raises(ValueError, match="expected a JSON array of objects or JSON lines"):
        list(rows(arr))
    with pytest.raises(DatasetUnavailable, match="no such file or folder"):
        list(rows(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="unknown benchmark 'helm'"):
        get_benchmark("helm")


def test_hub_name_gives_a_clear_error_when_the_hub_is_unreachable(monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetUnavailable, match="could not load 'allenai/reward-bench'.*pass a local JSON"):
        load("rewardbench", "allenai/reward-bench")
