"""The synthetic judging task (:mod:`grm.synthetic`) as a benchmark: exact ground truth, any seed.

``--data`` is a JSONL/JSON file of the task's examples (``query``, ``responses``, ``truth``, ``kind``, ``id``; as
:func:`grm.synthetic.write_examples` writes them), or a spec ``seed=S,n=N`` that generates ``N`` examples
with seed ``S`` on the fly. Items are scored per ``kind`` (subsets) and overall. An item with several responses is
right when the voted best response is the right one (ties broken at random); an item with one response is right
when its voted mean score lands on the side of the truth (nearer :data:`~grm.synthetic.RIGHT` for a right
response, nearer :data:`~grm.synthetic.WRONG` for a wrong one).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from grm.eval.base import Benchmark, Entry, EvalItem, Row, parse_rows, require, rows, text, texts
from grm.sources import DatasetUnavailable
from grm.synthetic import RIGHT, WRONG, make_examples
from grm.types import brief
from grm.voting import Vote

_SPEC = re.compile(r"^seed=(\d+),n=(\d+)$")


class Synthetic(Benchmark):
    """The synthetic judging task the shipped default GRM is trained on."""

    name = "synthetic"
    skips_bad_rows = True

    def read(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[Entry]:
        spec = _SPEC.match(str(source))
        if spec and not Path(source).exists():
            for e in make_examples(int(spec.group(2)), int(spec.group(1))):
                yield EvalItem(e.query, e.responses, e.truth, id=e.id, subset=e.kind)
            return
        if not Path(source).exists():
            raise DatasetUnavailable(f"{source}: no such file, and not a spec like 'seed=1000,n=200'")
        yield from parse_rows(rows(source), _item)

    def value(self, vote: Vote, truth: Sequence[float]) -> float:
        if len(truth) > 1:
            return super().value(vote, truth)
        if vote.mean is None:
            return 0.0
        said_right = vote.mean[0] > (RIGHT + WRONG) / 2
        return float(said_right == (truth[0] == RIGHT))


def _item(r: Row) -> list[EvalItem]:
    row = r.row
    require(row, ("query", "responses", "truth", "kind"))
    responses, truth = texts(row, "responses"), row["truth"]
    if isinstance(truth, str) or not isinstance(truth, list) or len(truth) != len(responses):
        raise ValueError(f"truth must be a list of one number per response ({len(responses)}), got {brief(truth)}")
    item_id = str(row["id"]) if row.get("id") is not None else f"{r.origin}:{r.index}"
    return [EvalItem(row["query"], responses, list(truth), id=item_id, subset=text(row, "kind"))]
