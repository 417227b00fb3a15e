import json
import os
import subprocess
import sys

import pytest

from grm.backends.transformers import TransformersBackend
from grm.cli import main
from helpers import MEMORIZED

pytestmark = pytest.mark.slow


def write_input(path):
    lines = [json.dumps({"id": f"r{i}", "query": q, "responses": r}) for i, (q, r, _) in enumerate(MEMORIZED)]
    lines.insert(1, '{"query": "no responses"}')
    lines.insert(2, "{not json")
    lines.insert(3, "")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def count_generate(monkeypatch):
    seen = []
    original = TransformersBackend.generate

    def counting(self, requests):
        seen.extend(requests)
        return original(self, requests)

    monkeypatch.setattr(TransformersBackend, "generate", counting)
    return seen


def run(model, inp, out, *extra):
    return main(
        [
            "score",
            "--model",
            model,
            "--input",
            str(inp),
            "--output",
            str(out),
            "--max-new-tokens",
            "80",
            "--chunk-size",
            "2",
            "--seed",
            "0",
            *extra,
        ]
    )


def test_score_streams_reports_malformed_rows_and_resumes(memorized_grm_path, tmp_path, count_generate):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp)
    assert run(memorized_grm_path, inp, out) == 1  # malformed rows make the exit code non-zero
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    by_index = {r["index"]: r for r in rows}
    assert sorted(by_index) == [0, 1, 2, 4, 5]
    assert by_index[1]["error"].startswith("line 2: columns ['query'] fit no shape; expected {query, responses}")
    assert "line 3: not valid JSON" in by_index[2]["error"]
    scored = [by_index[i] for i in (0, 4, 5)]
    assert [r["id"] for r in scored] == ["r0", "r1", "r2"]
    assert [r["judgements"][0]["scores"] for r in scored] == [t for _, _, t in MEMORIZED]
    assert [r["best"] for r in scored] == [0, 1, 0]
    assert len(count_generate) == 3

    # Simulate a crash: keep the first scored row, then half a line.
    first = out.read_text().splitlines()
    keep = [x for x in first if json.loads(x)["index"] in (0, 1, 2)]
    out.write_text("\n".join(keep) + "\n" + first[-1][:40])
    count_generate.clear()
    assert run(memorized_grm_path, inp, out) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == [0, 1, 2, 4, 5]
    assert len(count_generate) == 2  # only rows 4 and 5 were recomputed

    count_generate.clear()
    assert run(memorized_grm_path, inp, out) == 0
    assert count_generate == [] and len(out.read_text().splitlines()) == 5


def test_voting_options(memorized_grm_path, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"query": MEMORIZED[0][0], "responses": MEMORIZED[0][1], "label": 0}) + "\n")
    assert run(memorized_grm_path, inp, out, "-k", "3", "--no-shuffle") == 0
    row = json.loads(out.read_text())
    assert len(row["judgements"]) == 3 and all(j["order"] == [0, 1] for j in row["judgements"])
    assert row["best"] == 0 and row["n_valid"] >= 2


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "score" in capsys.readouterr().out


def test_foreign_output_file_is_refused(memorized_grm_path, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp)
    out.write_text('{"something": "else"}\n')
    assert run(memorized_grm_path, inp, out) == 2
    assert out.read_text() == '{"something": "else"}\n'


def test_meta_rm_guided_scoring(memorized_grm_path, tmp_path):
    from grm.tiny import build_sequence_classifier

    meta = tmp_path / "meta"
    build_sequence_classifier(meta, ["What is 2+2?", "Specific Criteria: Analysis: Scores: \\boxed{9, 2}"])
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"query": MEMORIZED[0][0], "responses": MEMORIZED[0][1]}) + "\n")
    assert run(memorized_grm_path, inp, out, "-k", "3", "--meta-rm", str(meta), "--k-meta", "1") == 0
    row = json.loads(out.read_text())
    assert len(row["meta_scores"]) == 3 and len(row["kept"]) == 1  # all three valid: the memorized judgement
    assert row["meta_scores"][row["kept"][0]] == max(row["meta_scores"])
    out.unlink()
    assert run(memorized_grm_path, inp, out, "-k", "3", "--k-meta", "1") == 2


def test_a_closed_standard_error_loses_no_row(memorized_grm_path, tmp_path):
    """``grm score ... 2>&1 | head``: once the reader is gone, every write to standard error (the progress bars,
    forced on and drawn at once here, and the logs) fails with a broken pipe. Scoring goes on, every row gets its
    real result (before, the bar's BrokenPipeError became "scoring failed" error rows, exit code 0)."""
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp)
    read_end, write_end = os.pipe()
    os.close(read_end)
    code = "import sys, grm.progress; grm.progress.DELAY_S = 0; from grm.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["score", "--model", memorized_grm_path, "--input", str(inp), "--output", str(out), "--chunk-size", "1"]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv, "--max-new-tokens", "80", "--seed", "0"],
            stdout=write_end,
            stderr=write_end,
            env={**os.environ, "GRM_PROGRESS": "1", "OMP_NUM_THREADS": "1"},
            timeout=600,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 1  # the two malformed lines, nothing else
    by_index = {r["index"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(by_index) == [0, 1, 2, 4, 5]
    assert [by_index[i]["judgements"][0]["scores"] for i in (0, 4, 5)] == [t for _, _, t in MEMORIZED]
    assert [i for i, r in by_index.items() if "error" in r] == [1, 2]
