"""``grm eval`` with a real tiny GRM (transformers backend): report files, and a re-run that generates nothing."""

import json

import pytest

from grm.backends.transformers import TransformersBackend
from grm.cli import main

pytestmark = pytest.mark.slow


def test_grm_eval_writes_a_report_and_resumes(memorized_grm_path, tmp_path, monkeypatch):
    data = tmp_path / "rb.jsonl"
    rows = [  # two of the items the tiny GRM memorized (tests/conftest.py), in RewardBench's format
        {"id": 10, "prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "subset": "alpacaeval-easy"},
        {"id": 11, "prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon", "subset": "hep-go"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    generated = []
    original = TransformersBackend.generate

    def counting(self, requests):
        generated.extend(requests)
        return original(self, requests)

    monkeypatch.setattr(TransformersBackend, "generate", counting)
    out = tmp_path / "out"
    args = ["eval", "--benchmark", "rewardbench", "--data", str(data), "--model", memorized_grm_path, "-k", "2"]
    args += ["--output", str(out), "--temperature", "0", "--max-new-tokens", "80", "--bootstrap", "20"]
    assert main(args) == 0
    assert generated, "the model was run"
    result = json.loads((out / "result.json").read_text())
    voting = result["scores"]["voting"]
    assert voting["subsets/alpacaeval-easy"] == voting["subsets/hep-go"] == voting["accuracy"] == 1.0
    assert voting["groups/Chat"] == voting["groups/Reasoning"] == 1.0 and "overall" not in voting
    assert sorted(result["curves"]["voting"]) == ["1", "2"] and result["n_invalid"] == 0
    cached = [json.loads(x) for x in (out / "judgements.jsonl").read_text().splitlines()]
    assert [(c["id"], c["k"], len(c["reward"]["judgements"])) for c in cached] == [("10", 2, 2), ("11", 2, 2)]
    assert "Scores:" in cached[0]["reward"]["judgements"][0]["text"]
    assert (out / "report.md").read_text().startswith("# rewardbench: 100.0% accuracy, Voting@2")
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"

    generated.clear()
    assert main(args) == 0
    assert generated == [], "every judgement came from the cache"
    assert json.loads((out / "result.json").read_text())["scores"] == result["scores"]


def test_grm_eval_checks_the_data_before_loading_a_model(tmp_path, caplog):
    args = ["eval", "--benchmark", "rmb", "--data", str(tmp_path / "nope"), "--model", str(tmp_path / "no-model")]
    assert main([*args, "--output", str(tmp_path / "out")]) == 2
    assert "Zhou-Zoey/RMB-Reward-Model-Benchmark" in caplog.text and "no-model" not in caplog.text
    args = ["eval", "--benchmark", "ppe-correctness", "--model", "m", "--output", str(tmp_path / "out")]
    assert main(args) == 2 and "--data is required for ppe-correctness" in caplog.text


def test_grm_eval_defaults_to_the_hub_dataset(tmp_path, caplog, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["eval", "--benchmark", "rewardbench", "--model", "m", "--output", str(tmp_path / "out")]) == 2
    assert "could not load 'allenai/reward-bench' (config None, split 'filtered')" in caplog.text


def test_grm_eval_with_a_meta_rm(memorized_grm_path, tmp_path):
    from grm.tiny import build_sequence_classifier

    meta_path = tmp_path / "meta"
    build_sequence_classifier(meta_path, ["What is 2+2?", "Specific Criteria: Analysis: Scores: \\boxed{9, 2}"])
    data = tmp_path / "rb.jsonl"
    data.write_text(
        json.dumps({"id": 1, "prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "subset": "mt-bench-easy"})
    )
    out = tmp_path / "out"
    args = ["eval", "--benchmark", "rewardbench", "--data", str(data), "--model", memorized_grm_path, "-k", "2"]
    args += ["--output", str(out), "--temperature", "0", "--max-new-tokens", "80", "--meta-rm", str(meta_path)]
    assert main([*args, "--k-meta", "1", "--bootstrap", "10"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["scores"]["metarm"]["accuracy"] == 1.0 and sorted(result["curves"]["metarm"]) == ["1", "2"]
    [row] = [json.loads(x) for x in (out / "judgements.jsonl").read_text().splitlines()]
    assert len(row["reward"]["meta_scores"]) == 2 and len(row["reward"]["kept"]) == 1
    assert (out / "report.md").read_text().startswith("# rewardbench: 100.0% accuracy, MetaRM@2")


def test_grm_eval_stops_at_a_bad_row_naming_it_or_skips_it_when_asked(tmp_path, caplog):
    """RewardBench needs its full item set: a bad row stops the run, named; --skip-bad-rows counts it and goes on."""
    data = tmp_path / "rb.jsonl"
    good = {"prompt": "What is 48 + 37?", "chosen": "85", "rejected": "84", "subset": "math-prm", "id": 1}
    data.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": 2, "chosen": ["not", "text"]}) + "\n")
    args = ["eval", "--benchmark", "rewardbench", "--data", str(data), "-k", "1", "--seed", "0"]
    assert main([*args, "--output", str(tmp_path / "stop")]) == 2
    assert "line 2" in caplog.text and not (tmp_path / "stop" / "result.json").exists()
    caplog.clear()
    assert main([*args, "--output", str(tmp_path / "skip"), "--skip-bad-rows"]) == 0
    result = json.loads((tmp_path / "skip" / "result.json").read_text())
    assert result["n_items"] == 1 and "1 bad rows skipped" in caplog.text
