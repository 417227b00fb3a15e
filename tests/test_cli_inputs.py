"""``grm score`` on data as users have it: every input format and row shape, the column flags, a malformed row in
each format, parquet and standard-output outputs, a quiet terminal, settings recorded and a resume with others
refused, options checked before anything is loaded, faults of the environment, missing extras. The GRM is scripted
(no model): each response's score is the number in its ``[qN]`` tag."""

import http.server
import io
import json
import logging
import re
import sys
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import grm.flags
import grm.jobs
from grm import GRM
from grm.backends import BackendUnavailableError
from grm.cli import main
from helpers import ScriptedBackend, judge_by


def tag(text: str) -> int:
    m = re.search(r"\[q(\d+)\]", text)
    return int(m.group(1)) if m else 5


@pytest.fixture
def backend(monkeypatch):
    """The scripted backend ``grm score`` loads in place of a model."""
    scripted = ScriptedBackend(judge_by(tag))
    scripted.loads = 0

    def load(args):
        scripted.loads += 1
        return GRM(scripted)

    monkeypatch.setattr(grm.flags, "load_grm", load)
    return scripted


def score(inp, out, *extra) -> int:
    return main(["score", "--input", str(inp), "--output", str(out), "--chunk-size", "2", "--seed", "0", *extra])


def columns(rows: list[dict]) -> dict[str, list]:
    """Rows as columns, as a parquet file or a dataset holds them: every row gets every column, null where it has
    none (``from_pylist``/``from_list`` would take the first row's columns only)."""
    return {k: [row.get(k) for row in rows] for k in dict.fromkeys(k for row in rows for k in row)}


def to_parquet(rows: list[dict], path) -> None:
    pq.write_table(pa.table(columns(rows)), path)


def read_out(path) -> dict[int, dict]:
    if str(path).endswith(".parquet"):
        rows = pq.read_table(path).to_pylist()
    else:
        rows = [json.loads(x) for x in path.read_text().splitlines()]
    return {r["index"]: r for r in rows}


CHAT_PAIR = {  # TRL's conversational preference format with the prompt inside the messages
    "chosen": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi [q9]"}],
    "rejected": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "bye [q2]"}],
}
ROWS = [
    {"id": "a", "query": "Pick one", "responses": ["x [q3]", "y [q8]", "z [q1]"]},
    {"id": "b", "prompt": "Which?", "chosen": "good [q7]", "rejected": "bad [q4]"},
    {"id": "c", "prompt": "Which?", "chosen": "worse [q2]", "rejected": "better [q6]"},
    {"id": "d", "prompt": "Rate it", "response": "fine [q6]"},
    {"id": "e", "prompt": [{"role": "user", "content": "Rate it"}], "completion": "ok [q4]"},
    {"id": "f", "prompt": "Tied", "chosen": "one [q5]", "rejected": "two [q5]"},
]

TYPED = [{**r, "prompt": "Rate it"} if "completion" in r else r for r in ROWS]
"""ROWS with one type per column, as parquet and datasets need (``prompt`` always a string)."""


def check_shapes(out: dict[int, dict], offset: int = 0) -> None:
    """The rows of :data:`ROWS` at ``offset`` onwards scored as their shapes say."""
    a, b, c, d, e, f = (out[offset + i] for i in range(6))
    assert [r["id"] for r in (a, b, c, d, e, f)] == list("abcdef")
    assert a["mean"] == [3, 8, 1] and a["best"] == 1 and a.get("winner") is None
    assert (b["winner"], b["margin"], b["mean"]) == ("chosen", 3, [7, 4])
    assert (c["winner"], c["margin"]) == ("rejected", -4)
    assert (d["mean"], e["mean"]) == ([6], [4])  # one response each, scored alone
    assert (f["winner"], f["margin"]) == ("tie", 0)


def test_jsonl_rows_in_every_shape(backend, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS + [{"id": "g", **CHAT_PAIR}]))
    assert score(inp, out) == 0
    rows = read_out(out)
    check_shapes(rows)
    assert (rows[6]["winner"], rows[6]["margin"]) == ("chosen", 7)
    asked = [r.messages[-1]["content"] for call in backend.calls for r in call]
    assert any("[The Start of Query]\nSay hi\n" in text for text in asked), "the pair's own prompt is used"


def test_json_array_parquet_csv_and_json_lines_in_a_json_file(backend, tmp_path):
    as_array = tmp_path / "rows.json"
    as_array.write_text(json.dumps(ROWS, indent=2))
    as_lines = tmp_path / "lines.json"
    as_lines.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    as_parquet = tmp_path / "rows.parquet"
    to_parquet(TYPED, as_parquet)
    for inp in (as_array, as_lines, as_parquet):
        out = tmp_path / f"{inp.name}.out.jsonl"
        assert score(inp, out) == 0, inp
        check_shapes(read_out(out))

    csv_in = tmp_path / "rows.csv"
    csv_in.write_text(
        "id,prompt,chosen,rejected\n"
        "b,Which?,good [q7],bad [q4]\n"
        'c,"Which,\nreally?","worse [q2]","better, ""quoted"" [q6]"\n'
    )
    out = tmp_path / "csv.jsonl"
    assert score(csv_in, out) == 0
    rows = read_out(out)
    assert [(r["id"], r["winner"]) for r in rows.values()] == [("b", "chosen"), ("c", "rejected")]
    asked = [r.messages[-1]["content"] for call in backend.calls[-1:] for r in call]
    assert any('better, "quoted" [q6]' in text and "Which,\nreally?" in text for text in asked)


def test_csv_responses_cell_holds_a_json_array(backend, tmp_path):
    inp, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    inp.write_text('query,responses\nq,"[""a [q2]"", ""b [q9]""]"\nq,not a list\n')
    assert score(inp, out) == 1
    rows = read_out(out)
    assert rows[0]["mean"] == [2, 9]
    assert rows[1]["error"] == "row 2 (line 3): responses must be a list of strings, got str"


def test_folders_split_by_file_name_and_save_to_disk(backend, tmp_path):
    import datasets

    folder = tmp_path / "download"
    (folder / "data").mkdir(parents=True)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "junk.jsonl").write_text("not read\n")
    to_parquet(ROWS[:3], folder / "data" / "test-00000-of-00001.parquet")
    (folder / "data" / "train.jsonl").write_text(json.dumps(ROWS[3]) + "\n")
    out = tmp_path / "out.jsonl"
    assert score(folder, out, "--split", "test") == 0
    assert [r["id"] for r in read_out(out).values()] == ["a", "b", "c"]
    assert score(folder, tmp_path / "none.jsonl") == 2  # two splits and none chosen
    assert score(folder, tmp_path / "none.jsonl", "--split", "validation") == 2
    assert not (tmp_path / "none.jsonl").exists()

    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(columns(ROWS[:1])), "test": datasets.Dataset.from_dict(columns(ROWS[1:3]))}
    ).save_to_disk(saved)
    out = tmp_path / "saved.jsonl"
    assert score(saved, out, "--split", "test") == 0
    assert [(r["index"], r["id"]) for r in read_out(out).values()] == [(0, "b"), (1, "c")]


def test_hub_dataset_is_streamed_with_its_split_and_subset(backend, tmp_path, monkeypatch):
    import datasets

    asked = []

    def load_dataset(path, name=None, split=None, streaming=False):
        asked.append((path, name, split, streaming))
        if path != "trl-lib/ultrafeedback_binarized":
            raise FileNotFoundError(f"Dataset '{path}' doesn't exist on the Hub")
        parts = {
            "train": datasets.Dataset.from_dict(columns(ROWS[:2])),
            "test": datasets.Dataset.from_dict(columns(TYPED)),
        }
        parts = {k: v.to_iterable_dataset() for k, v in parts.items()}
        return parts[split] if split else datasets.IterableDatasetDict(parts)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    out = tmp_path / "out.jsonl"
    assert score("trl-lib/ultrafeedback_binarized", out, "--split", "test", "--subset", "default") == 0
    assert asked == [("trl-lib/ultrafeedback_binarized", "default", "test", True)]
    check_shapes(read_out(out))
    assert score("trl-lib/ultrafeedback_binarized", tmp_path / "x.jsonl") == 2  # which split? the user says
    assert score("trl-lib/no-such", tmp_path / "x.jsonl", "--split", "test") == 2
    assert not (tmp_path / "x.jsonl").exists()


def test_a_malformed_row_in_each_format_is_an_error_row_and_the_rest_are_scored(backend, tmp_path):
    good = json.dumps(ROWS[1])
    cases = {
        "in.jsonl": (good + "\n{not json\n" + good + "\n", "line 2: not valid JSON"),
        "in.json": ("[" + good + ', 7, {"prompt": "p"}, ' + good + "]", "item 2 (line 1): expected a JSON object"),
        "in.csv": (
            "prompt,chosen,rejected\np,a [q7],b\np,a\np,a [q7],b\n",
            "row 2 (line 3): 2 cells where the header has 3",
        ),
    }
    for name, (text, error) in cases.items():
        inp, out = tmp_path / name, tmp_path / f"{name}.out.jsonl"
        inp.write_text(text)
        assert score(inp, out) == 1, name
        rows = read_out(out)
        assert rows[1]["error"].startswith(error), (name, rows[1]["error"])
        assert rows[0]["winner"] == "chosen" and rows[max(rows)]["winner"] == "chosen", name
    json_rows = read_out(tmp_path / "in.json.out.jsonl")
    assert "item 3 (line 1): columns ['prompt'] fit no shape; expected {query, responses}" in json_rows[2]["error"]

    inp, out = tmp_path / "in.parquet", tmp_path / "parquet.out.jsonl"
    to_parquet([ROWS[1], {"prompt": "p", "chosen": "only chosen"}, ROWS[2]], inp)
    assert score(inp, out) == 1
    rows = read_out(out)
    assert rows[1]["error"].startswith("row 2: columns ['prompt', 'chosen'] fit no shape")
    assert [rows[0]["winner"], rows[2]["winner"]] == ["chosen", "rejected"]

    bad_utf8 = tmp_path / "bytes.csv"
    bad_utf8.write_bytes(b"prompt,chosen,rejected\np,\xff\xfe,b\np,a [q9],b\n")
    assert score(bad_utf8, tmp_path / "bytes.out.jsonl") == 1
    rows = read_out(tmp_path / "bytes.out.jsonl")
    assert rows[0]["error"] == "row 1 (line 2): not valid UTF-8" and rows[1]["winner"] == "chosen"


def test_column_flags(backend, tmp_path):
    inp = tmp_path / "alpaca.jsonl"
    rows = [
        {"instruction": "Do it", "output": "done [q7]", "candidates": ["a [q1]", "b [q3]"], "alt": "c [q9]"},
        {"instruction": "Do it", "alt": "c [q9]"},
    ]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "one.jsonl"
    assert score(inp, out, "--query-column", "instruction", "--response-columns", "output") == 1
    got = read_out(out)
    assert got[0]["mean"] == [7]
    assert got[1]["error"].startswith("line 2: no column 'output' (or it is null); the row has ['instruction', 'alt']")
    out = tmp_path / "two.jsonl"
    assert score(inp, out, "--query-column", "instruction", "--response-columns", "output, alt") == 1
    assert read_out(out)[0]["mean"] == [7, 9]
    out = tmp_path / "list.jsonl"
    assert score(inp, out, "--query-column", "instruction", "--responses-column", "candidates") == 1
    assert read_out(out)[0]["mean"] == [1, 3]
    both = ("--responses-column", "candidates", "--response-columns", "output")
    assert score(inp, tmp_path / "both.jsonl", *both) == 2
    assert score(inp, tmp_path / "dup.jsonl", "--response-columns", "output,output") == 2
    assert not (tmp_path / "both.jsonl").exists() and not (tmp_path / "dup.jsonl").exists()


def test_parquet_output_is_written_at_the_end_and_an_interrupted_run_resumes(backend, tmp_path, caplog):
    inp, out = tmp_path / "in.jsonl", tmp_path / "scores.parquet"
    inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "{broken\n")
    cache = tmp_path / "scores.parquet.cache.jsonl"
    real = backend.generate
    calls = []

    def failing(requests):
        calls.append(len(requests))
        if len(calls) == 2:
            raise BackendUnavailableError("server went away")
        return real(requests)

    backend.generate = failing
    assert score(inp, out) == 3  # stopped: what was scored is kept in the cache, no parquet yet
    assert not out.exists() and len(cache.read_text().splitlines()) == 2
    backend.generate = real
    n_calls = len(backend.calls)
    assert score(inp, out) == 1  # the broken line is an error row
    assert len(backend.calls) - n_calls == 2  # rows 2-5 in two chunks; rows 0-1 were done
    rows = read_out(out)
    check_shapes(rows)
    assert rows[6]["error"].startswith("line 7: not valid JSON") and rows[6]["mean"] is None
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.string() and table.schema.field("margin").type == pa.float64()
    assert score(inp, out) == 0 and len(backend.calls) - n_calls == 2  # all done: the parquet file is rewritten
    assert read_out(out) == rows
    cache.unlink()
    n_calls = len(backend.calls)
    with caplog.at_level(logging.WARNING):
        assert score(inp, out) == 1 and len(backend.calls) - n_calls == 3  # all six rows again, in chunks of 2
    assert any("exists without" in r.getMessage() and "scored again" in r.getMessage() for r in caplog.records)
    assert read_out(out) == rows


def test_standard_output_holds_only_rows(backend, tmp_path, capsys, caplog):
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "[1]\n")
    with caplog.at_level(logging.INFO):
        assert score(inp, "-") == 1
    captured = capsys.readouterr()
    rows = {r["index"]: r for r in map(json.loads, captured.out.splitlines())}
    check_shapes(rows)
    assert rows[6]["error"] == "line 7: expected a JSON object, got list"
    assert "grm score: scored 6 rows, 1 failed" in captured.err  # the summary, on standard error
    assert any("scored 6 rows, 1 failed" in r.getMessage() for r in caplog.records)
    assert not any(p.name == "-" for p in tmp_path.iterdir())


def test_a_closed_standard_output_ends_the_run_quietly(backend, tmp_path, monkeypatch):
    class Closing(io.StringIO):
        def write(self, text):
            if self.getvalue():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    closing = Closing()
    monkeypatch.setattr(sys, "stdout", closing)
    assert score(inp, "-") == 0
    assert json.loads(closing.getvalue())["id"] == "a"


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_libraries_log_each_request_only_with_verbose(backend, tmp_path, caplog):
    """The backend makes a real HTTP request per call, as the OpenAI-compatible backend does; httpx logs each one
    at INFO level, which the default terminal must not show; so does vLLM for its engine's steps."""
    import httpx

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real = backend.generate

    def requesting(requests):
        httpx.get(f"http://127.0.0.1:{server.server_address[1]}/", trust_env=False)
        logging.getLogger("vllm.v1.engine").info("engine step")
        return real(requests)

    backend.generate = requesting
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    try:
        for flags, heard in (((), False), (("-v",), True), ((), False)):
            caplog.clear()
            with caplog.at_level(logging.DEBUG):
                argv = [*flags, "score", "--input", str(inp), "--output", "-", "--chunk-size", "3"]
                assert main(argv) == 0
            requests = [r for r in caplog.records if r.name == "httpx" and "HTTP Request: GET" in r.getMessage()]
            assert len(requests) == (2 if heard else 0), flags
            steps = [r for r in caplog.records if r.name.startswith("vllm") and r.getMessage() == "engine step"]
            assert len(steps) == (2 if heard else 0), flags
            assert any(r.name == "grm" and "scored 6 rows" in r.getMessage() for r in caplog.records)
    finally:
        server.shutdown()


def test_error_rows_are_logged_a_few_at_a_time(backend, tmp_path, caplog):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"x": 1}\n' * 50)
    with caplog.at_level(logging.INFO):
        assert score(inp, tmp_path / "out.jsonl") == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == grm.jobs.ERROR_WARNINGS + 1 and "see their error rows" in warnings[-1].getMessage()
    assert len(read_out(tmp_path / "out.jsonl")) == 50


def test_a_resume_with_other_settings_is_refused_before_a_model_is_loaded(backend, tmp_path, caplog):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert main(["score", "--input", str(inp), "--output", str(out), "-k", "8", "--seed", "0"]) == 0
    written, loads = out.read_text(), backend.loads
    with caplog.at_level(logging.ERROR):
        assert main(["score", "--input", str(inp), "--output", str(out), "-k", "2", "--seed", "1"]) == 2
    assert "k: 8 then, 2 now" in caplog.text and "seed: 0 then, 1 now" in caplog.text
    assert f"Delete {out} to start afresh, or write to another output" in caplog.text
    assert out.read_text() == written and backend.loads == loads  # nothing loaded, nothing written
    for flags in (["--no-shuffle"], ["--temperature", "0.7"], ["--template", "correctness"], ["--max-retries", "2"]):
        assert main(["score", "--input", str(inp), "--output", str(out), "-k", "8", "--seed", "0", *flags]) == 2
    assert main(["score", "--input", str(inp), "--output", str(out), "-k", "8", "--seed", "0"]) == 0  # same: resumes
    assert out.read_text() == written

    legacy = tmp_path / "legacy.jsonl"
    legacy.write_text(written)  # rows written by a grm that recorded no settings
    with caplog.at_level(logging.ERROR):
        assert main(["score", "--input", str(inp), "--output", str(legacy), "-k", "8", "--seed", "0"]) == 2
    assert "holds rows but no record of the settings" in caplog.text and legacy.read_text() == written


def test_an_unseeded_run_draws_a_seed_records_it_and_resumes_with_it(backend, tmp_path, caplog):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(
        "".join(
            json.dumps({"id": i, "query": f"q{i}", "responses": ["a [q3]", "b [q5]", "c [q4]"]}) + "\n"
            for i in range(6)
        )
    )
    argv = ["score", "--input", str(inp), "--chunk-size", "2", "-k", "3"]
    with caplog.at_level(logging.INFO):
        assert main([*argv, "--output", str(out)]) == 0
    seed = json.loads((tmp_path / "out.jsonl.settings.json").read_text())["settings"]["seed"]
    assert f"seed {seed} (drawn; --seed {seed} repeats this run)" in caplog.text
    full = {r["index"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert {r["seed"] for r in full.values()} == {seed}
    out.write_text("".join(json.dumps(full[i]) + "\n" for i in (0, 1)))
    assert main([*argv, "--output", str(out)]) == 0  # resumed without --seed: the recorded seed
    assert {r["index"]: r for r in map(json.loads, out.read_text().splitlines())} == full
    assert main([*argv, "--output", str(tmp_path / "again.jsonl"), "--seed", str(seed)]) == 0
    assert read_out(tmp_path / "again.jsonl") == full  # --seed repeats the unseeded run


def test_no_judgements_and_the_summary(backend, tmp_path, caplog):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "[1]\n")
    with caplog.at_level(logging.INFO):
        assert score(inp, out, "-k", "3", "--no-judgements") == 1
    rows = read_out(out)
    assert all("judgements" not in r for r in rows.values()) and rows[0]["n_drawn"] == 3 and rows[0]["n_valid"] == 3
    summary = f"grm score: scored 6 rows, 1 failed, 0 skipped as done; 3.00 judgements per row; output in {out}"
    assert summary in caplog.text


BAD_OPTIONS = [
    ["--adaptive", "--risk", "1"],
    ["--adaptive", "--risk", "nan"],
    ["--adaptive", "--risk", "-0.1"],
    ["--risk", "0.5"],  # risk without adaptive
    ["--budget", "-1"],
    ["--budget", "0"],
    ["--budget", "1.5"],
    ["--budget", "1"],  # one judgement for a chunk of two rows
    ["--budget", "nan"],
    ["--budget", "150%"],
    ["--budget", "\u0663"],  # an Arabic-Indic three
    ["-k", "\uff17"],  # a fullwidth seven
    ["--seed", "\U0001d7d5"],  # a mathematical bold seven
    ["--chunk-size", "0"],
    ["--temperature", "inf"],
    ["--temperature", "-1"],
    ["--max-retries", "-1"],
    ["--k-meta", "1"],  # without --meta-rm
    ["--template", "no-such-template"],
    ["--backend-arg", "novalue"],
]


@pytest.mark.parametrize("flags", BAD_OPTIONS, ids=lambda f: " ".join(f))
def test_a_bad_option_fails_fast_and_writes_nothing(backend, tmp_path, flags, capsys):
    """Exit code 2 before anything is loaded or written: from argparse (a number that does not parse) or from the
    checks (a value out of range, named by ScoringOptions)."""
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    try:
        code = score(inp, out, *flags)
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert backend.loads == 0 and list(tmp_path.iterdir()) == [inp]
    err = capsys.readouterr().err
    if any(not c.isascii() for f in flags for c in f):
        assert "ASCII" in err


@pytest.mark.parametrize(
    ("command", "module", "extra"),
    [
        (["serve"], "fastapi", "serve"),
        (["train", "rft", "--config", "x.yaml"], "trl", "train"),
        (["score", "--input", "in.jsonl", "--output", "out.jsonl", "--ray"], "ray", "ray"),
        (["eval", "--benchmark", "rewardbench", "--data", "in.jsonl", "--output", "o", "--ray"], "ray", "ray"),
    ],
    ids=lambda x: x if isinstance(x, str) else x[0],
)
def test_a_missing_extra_is_one_line_naming_it(backend, tmp_path, monkeypatch, capsys, command, module, extra):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text(json.dumps({**ROWS[1], "subset": "chat"}) + "\n")
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if the extra were not installed
    for loaded in [m for m in sys.modules if m.startswith(("grm.server", "grm.distributed", "grm.training.rft"))]:
        monkeypatch.delitem(sys.modules, loaded)  # the package and its modules (grm.server.app imports fastapi)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f'pip install "grm[{extra}]"' in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert backend.loads == 0


def test_environment_faults_stop_the_run_with_what_was_written_kept(backend, tmp_path, caplog):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    real = backend.generate
    for fault, code in ((OSError(28, "No space left on device"), 3), (KeyboardInterrupt(), 130)):
        calls = []

        def failing(requests, fault=fault, calls=calls):
            calls.append(1)
            if len(calls) == 2:
                raise fault
            return real(requests)

        backend.generate = failing
        with caplog.at_level(logging.ERROR):
            assert score(inp, out) == code
        assert "run the same command again to resume" in caplog.text
        assert sorted(read_out(out)) == [0, 1] and not any("error" in r for r in read_out(out).values())
        out.unlink()
    backend.generate = real
    assert score(inp, out) == 0 and len(read_out(out)) == 6


def test_help_shows_the_defaults_and_every_trainer(capsys):
    for argv, wanted in (
        (["score", "--help"], ["(default: 1; k=1 is greedy)", "(default: 64)", "GRM_PROGRESS"]),
        (["train", "--help"], ["meta-rm-data", "meta-rm", "rft", "grpo", "default-grm"]),
        (["eval", "--help"], ["(default: 1; k=1 is greedy)", "(default: 32)"]),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        missing = [w for w in wanted if w not in text]
        assert missing == [], (argv, missing)
