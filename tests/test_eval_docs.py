"""docs/evaluation.md's example data files: each loads through its benchmark's loader, every benchmark has one, and
an evaluation of each reports its headline as a fraction."""

import json
import re
from pathlib import Path

import pytest
from eval_helpers import run

from grm.eval import BENCHMARKS, get_benchmark

DOC = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"
EXAMPLE = re.compile(r"<!-- eval-example: (\S+) (\S+) -->\n```(\w+)\n(.*?)```", re.S)


def examples() -> list[tuple[str, str, str]]:
    """(benchmark, file path, content) of each example block of the page."""
    return [(m.group(1), m.group(2), m.group(4)) for m in EXAMPLE.finditer(DOC.read_text(encoding="utf-8"))]


def written(tmp_path: Path, benchmark: str) -> Path:
    """The benchmark's example files written under ``tmp_path``: the data to load (one file, or the folder)."""
    paths = []
    for name, path, content in examples():
        if name == benchmark:
            paths.append(tmp_path / path)
            paths[-1].parent.mkdir(parents=True, exist_ok=True)
            paths[-1].write_text(content, encoding="utf-8")
    return paths[0] if len(paths) == 1 else tmp_path


def rows_in(path: str, content: str) -> int:
    return len(content.splitlines()) if path.endswith(".jsonl") else len(json.loads(content))


def test_every_benchmark_has_an_example_and_every_example_a_benchmark():
    names = [name for name, _, _ in examples()]
    assert sorted(set(names)) == sorted(BENCHMARKS)
    assert DOC.read_text().count("<!-- eval-example:") == len(names), "every marker is followed by its block"


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
def test_the_example_loads_through_the_loader_and_scores(tmp_path, benchmark):
    data = written(tmp_path, benchmark)
    items = list(get_benchmark(benchmark).items(data))
    lines = sum(rows_in(p, c) for n, p, c in examples() if n == benchmark)
    assert len(items) == lines * (2 if benchmark == "judgebench" else 1)
    result = run(benchmark, data, lambda messages, responses: [float(len(r)) for r in responses])
    report = result.to_dict()
    assert report["unit"] == "fraction" and report["headline"] == result.scores["voting"]["headline"]
    assert report["headline_key"] in ("overall", "accuracy") and 0 <= result.headline <= 1
