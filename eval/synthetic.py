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

from grm.eval.base import Benchmark, EvalItem, iter_records, require
from grm.sources import DatasetUnavailable
from grm.synthetic import RIGHT, WRONG, make_examples
from grm.voting import Vote

_SPEC = re.compile(r"^seed=(\d+),n=(\d+)$")


class Synthetic(Benchmark):
    """The synthetic judging task the shipped default GRM is trained on."""

    name = "synthetic"

    def items(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[EvalItem]:
        spec = _SPEC.match(str(source))
        if spec and not Path(source).exists():
            for e in make_examples(int(spec.group(2)), int(spec.group(1))):
                yield EvalItem(e.query, e.responses, e.truth, id=e.id, subset=e.kind)
            return
        if not Path(source).exists():
            raise DatasetUnavailable(f"{source}: no such file, and not a spec like 'seed=1000,n=200'")
        for origin, index, row in iter_records(source):
            where = f"{origin} item {index}"
            require(row, ("query", "responses", "truth", "kind"), where)
            if len(row["truth"]) != len(row["responses"]):
                raise ValueError(f"{where}: {len(row['truth'])} truth values for {len(row['responses'])} responses")
            item_id = str(row["id"]) if row.get("id") is not None else f"{origin}:{index}"
            yield EvalItem(row["query"], list(row["responses"]), list(row["truth"]), id=item_id, subset=row["kind"])

    def value(self, vote: Vote, truth: Sequence[float]) -> float:
        if len(truth) > 1:
            return super().value(vote, truth)
        if vote.mean is None:
            return 0.0
        said_right = vote.mean[0] > (RIGHT + WRONG) / 2
        return float(said_right == (truth[0] == RIGHT))
