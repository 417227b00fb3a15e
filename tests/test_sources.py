"""grm.sources, grm.rows and grm.outputs as a hostile user would feed them: cut chunks, odd bytes, huge items and
rows, files of the wrong shape. Time bounds are CPU seconds of the test's thread, so other load does not count."""

import csv
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import grm.sources
from grm.outputs import write_parquet
from grm.rows import Columns, RowError, answers, row_item, verdict
from grm.sources import DatasetUnavailable, Source
from grm.types import Reward

PAIR = {"prompt": "p", "chosen": "a", "rejected": "b"}


def records(path, **kw):
    return [(r.position, r.where, r.row, r.error) for r in Source(path, **kw)]


def test_a_json_array_is_read_item_by_item_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(grm.sources, "_CHUNK", 16)  # every item, number and character straddles a chunk
    items = [{"n": 1234567890123, "x": 0.5}, {"text": "caf\u00e9 \u2028 \U0001f600 \u00e9\u00e9"}, {"deep": [[[1]]]}]
    path = tmp_path / "a.json"
    path.write_bytes(
        b"\xef\xbb\xbf \n[" + b",\n".join(json.dumps(i, ensure_ascii=False).encode() for i in items) + b"]\n"
    )
    got = records(path)
    assert [row for _, _, row, _ in got] == items
    assert [where for _, where, _, _ in got] == ["item 1 (line 2)", "item 2 (line 3)", "item 3 (line 4)"]


def test_a_json_array_of_many_items_and_one_huge_item_reads_in_linear_time(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"q": "x" * 4_000_000}] + [{"i": i} for i in range(50_000)]))
    start = time.thread_time()
    got = Source(path)
    n = sum(1 for r in got if r.row is not None)
    assert n == 50_001 and time.thread_time() - start < 10


def test_bad_json_arrays(tmp_path):
    cases = {
        "[" + "[" * 100_000 + "]" * 100_000 + "]": [(0, None, "item 1 (line 1): not readable: JSON nested too deeply")],
        '[{"a": 1}, {"a": tru}, {"a": 2}]': [(0, {"a": 1}, None), (1, None, "item 2 (line 1): not valid JSON")],
        '[{"a": 1}, "s", null]': [
            (0, {"a": 1}, None),
            (1, None, "item 2 (line 1): expected a JSON object, got str"),
            (2, None, "item 3 (line 1): expected a JSON object, got NoneType"),
        ],
        "[]": [],
        '[{"a": 1},\n]': [(0, {"a": 1}, None)],
    }
    for text, expected in cases.items():
        path = tmp_path / "x.json"
        path.write_text(text)
        got = records(path)
        assert len(got) == len(expected), text
        for (position, _, row, error), (p, r, prefix) in zip(got, expected):
            assert (position, row) == (p, r) and (error is None if prefix is None else error.startswith(prefix)), text
    for text, message in {
        '[{"a": 1}, {"a": 2}': "the array is not closed after item 2",
        '[{"a": 1}] {"b": 2}': "text after the array's end",
        '[{"a": 1} {"a": 2}]': "expected ',' or ']' after item 1",
        '"text"': "expected a JSON array of objects or JSON lines",
    }.items():
        path = tmp_path / "x.json"
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            records(path)
    path.write_bytes(b'[{"a": "\xff"}]')
    assert records(path)[0][3].startswith("item 1 (line 1): not valid UTF-8")


def test_csv_rows_keep_quoted_line_breaks_and_name_their_lines(tmp_path, monkeypatch):
    path = tmp_path / "x.csv"
    path.write_bytes(
        b"\xef\xbb\xbfprompt,chosen,rejected\r\n"
        b'p,"two\r\nlines",b\r\n'
        b"\r\n"
        + "p,a\u2028b,c\r\n".encode()
        + b"p,\xff,c\r\n"
        + b"p,a,b,extra\r\n"
        + b"p,"
        + b"x" * 100
        + b",c\r\n"
        + b"p,last,c\r\n"
    )
    monkeypatch.setattr(grm.sources, "_CSV_FIELD_LIMIT", 50)
    limit = csv.field_size_limit(50)
    try:
        got = records(path)
    finally:
        csv.field_size_limit(limit)
    assert got[0][2] == {"prompt": "p", "chosen": "two\r\nlines", "rejected": "b"}
    assert got[1][:3] == (1, "row 2 (line 5)", {"prompt": "p", "chosen": "a\u2028b", "rejected": "c"})
    assert got[2][3] == "row 3 (line 6): not valid UTF-8"
    assert got[3][3] == "row 4 (line 7): 4 cells where the header has 3"
    assert got[4][3].startswith("row 5 (line 8): not valid CSV (field larger than field limit")
    assert got[5][2] == {"prompt": "p", "chosen": "last", "rejected": "c"}
    path.write_text("a,a\n1,2\n")
    with pytest.raises(ValueError, match="names a column twice"):
        records(path)
    path.write_text("")
    assert records(path) == []


def test_folders_splits_positions_and_totals(tmp_path):
    folder = tmp_path / "d"
    (folder / "train").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / ".git" / "x.jsonl").write_text("junk\n")
    (folder / "train" / "a.jsonl").write_text(json.dumps(PAIR) + "\n\n" + json.dumps(PAIR) + "\n")
    pq.write_table(pa.Table.from_pylist([PAIR] * 3), folder / "test.parquet")
    source = Source(folder, split="train")
    assert (source.splits, source.total) == (["train"], None)
    assert [(p, w) for p, w, _, _ in records(folder, split="train")] == [(0, "line 1"), (2, "line 3")]
    source = Source(folder)
    assert (source.splits, [p.origin for p in source.parts]) == (["test", "train"], ["test.parquet", "train/a.jsonl"])
    assert [(p, w) for p, w, _, _ in records(folder)][3:] == [(3, "train/a.jsonl line 1"), (5, "train/a.jsonl line 3")]
    assert Source(folder, split="test").total == 3
    with pytest.raises(
        DatasetUnavailable, match=r"no files of split 'dev'; its files name the splits \['test', 'train'\]"
    ):
        Source(folder, split="dev")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "rows.jsonl").write_text(json.dumps(PAIR) + "\n")
    assert len(records(plain, split="filtered")) == 1  # files that name no split are read whatever the split
    for missing in (tmp_path / "missing.jsonl", "data/missing.parquet"):  # the second is no hub id: a typo
        with pytest.raises(DatasetUnavailable, match="no such file or folder, and not a hub dataset name"):
            Source(missing)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="unknown data file type '.txt'"):
        Source(tmp_path / "x.txt")
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        Source(tmp_path / "fake.parquet")


def test_rows_become_items_or_name_what_is_wrong():
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    pair = {
        "chosen": [*chat, {"role": "assistant", "content": "a"}],
        "rejected": [*chat, {"role": "assistant", "content": "b"}],
    }
    got = row_item(pair, "row 1")
    assert (got.shape, got.item.query, got.item.responses) == ("pair", chat, ["a", "b"])
    got = row_item({"prompt": "q", "completion": [{"role": "assistant", "content": "c"}]}, "row 1")
    assert (got.shape, got.item.responses) == ("single", ["c"])
    assert row_item({"query": "q", "responses": ["a"], "chosen": "x", "rejected": "y"}, "r").shape == "responses"
    assert row_item({"prompt": "q", "chosen": "x", "rejected": None, "response": "z"}, "r").shape == "single"
    bad = {
        "line 1: expected a JSON object, got list": [1],
        "line 1: chosen and rejected continue different conversations": {**pair, "rejected": "b"},
        "line 1: chosen must be a string or chat messages ending with an assistant turn": {**PAIR, "chosen": [1]},
        "line 1: no query: expected a column 'query' or 'prompt'": {"chosen": "a", "rejected": "b"},
        "line 1: query must be a string or a non-empty list of chat messages": {"query": 5, "responses": ["a"]},
        "line 1: responses must be a list of strings; got a string that is not a JSON array": {
            "query": "q",
            "responses": "[" * 100_000,
        },
        "line 1: responses must be a list of strings, got str": {"query": "q", "responses": "a"},
        "line 1: id must be a string, a finite number or null": {**PAIR, "id": [1]},
    }
    for message, row in bad.items():
        got = row_item(row, "line 1")
        assert got.item is None and got.error.startswith(message), (message, got.error)
    wide = {f"column {i} " + "x" * 1000: i for i in range(100_000)}
    start = time.thread_time()
    got = row_item(wide, "line 1")
    assert time.thread_time() - start < 5
    assert "fit no shape" in got.error and "(99988 more)" in got.error and len(got.error) < 2000


def test_columns_flags_are_checked():
    assert Columns.parse("q", None, " a , b ").response_columns == ("a", "b")
    with pytest.raises(ValueError, match="not both"):
        Columns.parse(None, "r", "a")
    with pytest.raises(ValueError, match="distinct, non-empty"):
        Columns.parse(None, None, "a,,b")
    got = row_item({"q": "x", "a": "1", "b": "2"}, "line 1", Columns.parse("q", None, "a,b"))
    assert (got.shape, got.item.responses) == ("columns", ["1", "2"])
    with pytest.raises(RowError, match="the query must be a string or chat messages, got 5"):
        answers([("a", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}])], 5)


def test_verdict():
    def reward(mean):
        return Reward(rewards=mean, best=0, judgements=[], n_valid=1, mean=mean)

    assert verdict(reward([7.0, 4.5])) == {"winner": "chosen", "margin": 2.5}
    assert verdict(reward([2.0, 3.0])) == {"winner": "rejected", "margin": -1.0}
    assert verdict(reward([5.0, 5.0])) == {"winner": "tie", "margin": 0.0}
    assert verdict(reward(None)) == {"winner": None, "margin": None}


def test_parquet_output_takes_every_column_whichever_rows_come_first(tmp_path):
    cache, out = tmp_path / "c.jsonl", tmp_path / "o.parquet"
    rows = [{"index": 0, "id": None, "error": "line 1: bad"}, {"index": 1, "id": 7, "error": "line 2: bad"}]
    rows += [
        {"index": 2, "id": "x", "mean": [7, 4.5], "judgements": [{"text": "t", "scores": [7, 4]}], "winner": "chosen"},
        {"index": 3, "id": 3.5, "mean": None, "judgements": [{"text": "u", "scores": None, "error": "e"}]},
    ]
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_parquet(cache, out, batch_rows=2)  # the first batch holds only error rows
    table = pq.read_table(out)
    got = table.to_pylist()
    assert [r["id"] for r in got] == [None, "7", "x", "3.5"]
    assert got[2]["mean"] == [7.0, 4.5] and got[2]["judgements"][0] == {"text": "t", "scores": [7, 4], "error": None}
    assert got[0]["winner"] is None and got[3]["judgements"][0]["error"] == "e"
    assert not (tmp_path / "o.parquet.partial").exists()
    cache.write_text("")
    write_parquet(cache, out)
    assert pq.read_table(out).num_rows == 0
