import json

import pytest

from grm.jsonl import JsonlWriter, drop_rows, load_finished, read_rows


def test_truncated_last_line_is_dropped_and_complete_one_kept(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as w:
        for i in range(3):
            w.write({"index": i, "text": "x" * 100_000})  # lines longer than the tail block
    full = path.read_bytes()
    path.write_bytes(full + b'{"index": 3, "te')
    assert sorted(load_finished(path, "index", keep=lambda r: len(r["text"]))) == [0, 1, 2]
    assert path.read_bytes() == full
    path.write_bytes(full + b'{"index": 3}')  # complete JSON, only the newline missing
    assert sorted(load_finished(path, "index")) == [0, 1, 2, 3]
    assert path.read_bytes().endswith(b'{"index": 3}\n')
    path.write_bytes(b'{"index": 0')  # a single, cut line
    assert load_finished(path, "index") == {} and path.read_bytes() == b""


def test_foreign_rows_and_bad_lines(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n')
    with pytest.raises(ValueError, match="line 1 has no 'index'"):
        load_finished(path, "index")
    path.write_text('{"index": 0}\n\n[1]\nnope\n')
    assert [(n, e) for n, _, e in read_rows(path)] == [
        (1, None),
        (3, "line 3: expected a JSON object, got list"),
        (4, "line 4: not valid JSON (Expecting value at column 1)"),
    ]
    assert load_finished(tmp_path / "missing.jsonl", "index") == {}
    assert json.loads(path.read_text().splitlines()[0]) == {"index": 0}


def test_drop_rows_removes_only_the_rows_asked_and_keeps_the_rest_byte_for_byte(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as w:
        for i in range(5):
            w.write({"index": i, **({"error": "bad"} if i % 2 else {"text": "é"})})
    keep = [line for line in path.read_bytes().splitlines(keepends=True) if b"error" not in line]
    path.write_bytes(path.read_bytes() + b'{"index": 5, "err')  # a cut last line is dropped first
    assert drop_rows(path, lambda row: "error" in row) == 2
    assert path.read_bytes() == b"".join(keep) and sorted(load_finished(path, "index")) == [0, 2, 4]
    assert drop_rows(path, lambda row: "error" in row) == 0 and path.read_bytes() == b"".join(keep)
    assert drop_rows(tmp_path / "missing.jsonl", lambda row: True) == 0
    assert not list(tmp_path.glob("*.partial"))
