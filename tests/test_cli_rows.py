"""grm score on hostile rows: every bad row (bad fields, bad UTF-8, deep nesting, NaN, a template that fails)
becomes an error row naming its line, the rest are scored, and a second run resumes with nothing left to do."""

from __future__ import annotations

import json

import pytest
from servers import FaultServer

from grm.cli import main
from helpers import judge_by

TEMPLATE = """{#- grm: score_range=1,10 -#}
{% if query == "boom" %}{{ no_such_variable }}{% endif %}[The Start of Query]
{{ query }}
[The End of Query]
{% for r in responses %}[The Start of Response {{ loop.index }}]
{{ r }}
[The End of Response {{ loop.index }}]
{% endfor %}"""


def test_grm_score_turns_every_bad_row_into_an_error_row(tmp_path, capsys):
    inp, out, template = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "t.j2"
    template.write_text(TEMPLATE)
    rows = [
        json.dumps({"id": "a", "query": "case:x", "responses": ["a", "bb"]}).encode(),
        json.dumps({"query": "q", "responses": ["a"], "principles": 5}).encode(),
        json.dumps({"query": "q", "responses": ["a"], "reference": 42}).encode(),
        b'{"query": "caf\xe9", "responses": ["a"]}',
        b'{"query": ' + b"[" * 100_000,
        b'{"id": NaN, "query": "q", "responses": ["a"]}',
        json.dumps({"id": "boom", "query": "boom", "responses": ["a"]}).encode(),
        json.dumps({"id": "b", "query": "case:y", "responses": ["ccc"]}).encode(),
    ]
    inp.write_bytes(b"\xef\xbb\xbf" + b"\n".join(rows) + b"\n")
    args = ["score", "--model", "judge", "--backend", "openai", "--input", str(inp), "--output", str(out)]
    args += ["--template", str(template), "--no-shuffle", "--chunk-size", "8", "--backend-arg", "retries=0"]
    with FaultServer({}, judge_by(len)) as fault:
        assert main([*args, "--backend-arg", f"base_url={fault.url}"]) == 1
        hits = sum(fault.hits.values())
        assert hits == 2  # case:x and case:y, each once
        assert main([*args, "--backend-arg", f"base_url={fault.url}"]) == 0  # resumes: all rows done
        assert sum(fault.hits.values()) == hits
    written = out.read_text(encoding="utf-8").splitlines()
    by_index = {r["index"]: r for r in (json.loads(x, parse_constant=pytest.fail) for x in written)}
    assert sorted(by_index) == list(range(8))
    assert by_index[0]["id"] == "a" and by_index[0]["rewards"] == [1.0, 2.0]
    assert by_index[7]["id"] == "b" and by_index[7]["rewards"] == [3.0]
    errors = {i: by_index[i]["error"] for i in range(1, 7)}
    assert errors[1] == "line 2: principles must be a string or a list of strings, got int"
    assert errors[2] == "line 3: reference must be a string, got int"
    assert errors[3] == "line 4: not valid UTF-8 (byte 0xe9 at column 15)"
    assert errors[4] == "line 5: not readable: JSON nested too deeply"
    assert errors[5] == "line 6: id must be a string, a finite number or null, got nan" and by_index[5]["id"] is None
    assert errors[6].startswith("line 7: scoring failed: TemplateError") and by_index[6]["id"] == "boom"
    assert "Traceback" not in capsys.readouterr().err
