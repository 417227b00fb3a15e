"""ReaLMistake (Kamoi et al., COLM 2024): does a single LLM response contain an error? Scored by ROC-AUC.

Facts from the public psunlpgroup/ReaLMistake README (commit f94a8b978926414deb1dcf6b50076fd06c892192): three
tasks (``math_word_problem_generation``, ``finegrained_fact_verification``, ``answerability_classification``),
responses from GPT-4 and Llama 2 70B. On the hub (``ryokamoi/realmistake``, gated) each task is a config with
splits ``gpt4`` and ``llama2``, and rows hold ``input``, ``llm_response``, ``error_label``, ... ; the JSONL files
of the repository's ``data.zip`` (``data/<task>/<model>.jsonl``) name the label ``label`` instead. Labels are
``error`` or ``no_error``. The data has no item ids, so items are keyed by task, file (or split) and position.

The GRM rates the one response; a lower reward should mean an error. ROC-AUC is computed per task and, as
``overall``, over all items pooled.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from grm.eval.base import Benchmark, Entry, EvalItem, Row, Table, parse_rows, require, rows, text
from grm.eval.metrics import roc_auc
from grm.sources import DatasetUnavailable, is_hub_id
from grm.types import brief
from grm.voting import Vote

TASKS = ("math_word_problem_generation", "finegrained_fact_verification", "answerability_classification")
RESPONSE_MODELS = ("gpt4", "llama2")
"""The hub splits: the models whose responses are judged."""
_LABELS = {"error": 0.0, "no_error": 1.0}


class ReaLMistake(Benchmark):
    """ReaLMistake error detection: ROC-AUC of the voted mean reward against ``no_error``."""

    name = "realmistake"
    metric = "roc_auc"
    hub_id = "ryokamoi/realmistake"

    def read(self, source: str | Path, *, split: str | None = None, name: str | None = None) -> Iterator[Entry]:
        if is_hub_id(str(source)):
            for task in [name] if name else TASKS:
                for part in [split] if split else RESPONSE_MODELS:
                    records = rows(source, split=part, name=task)
                    yield from parse_rows(records, lambda r, task=task, part=part: [_item(r, task, part)])
            return
        path = Path(source)
        if not path.exists():
            raise DatasetUnavailable(f"{source}: no such file or folder, and not a hub dataset name (owner/name)")
        if (path / "data").is_dir():  # the folder data.zip was unzipped in
            path = path / "data"
        # a file, or data/ with <task>/<model>.jsonl (its example.jsonl, the paper's examples, is not read)
        files = [path] if path.is_file() else sorted(path.glob("*/*.jsonl"))
        if not files:
            raise DatasetUnavailable(f"{path}: no <task>/<model>.jsonl files below this folder")
        for file in files:
            yield from parse_rows(rows(file), lambda r, file=file: [_item(r, file.parent.name, file.stem)])

    def value(self, vote: Vote, truth: Sequence[float]) -> float:
        return float("nan") if vote.mean is None else vote.mean[0]

    def label(self, truth: Sequence[float]) -> float:
        return truth[0]

    def summarize(self, table: Table) -> dict[str, float]:
        scores = {"overall": roc_auc(table.labels, table.values)}
        for subset, index in zip(table.subsets, table.groups()):
            if len(index):
                scores[f"subsets/{subset}"] = roc_auc(table.labels[index], table.values[index])
        return scores


def _item(r: Row, task: str, part: str) -> EvalItem:
    """A row of ``task``'s ``part`` (a hub split or a file's stem), keyed by task, part and place."""
    row = r.row
    require(row, ("input", "llm_response"))
    label = row.get("error_label", row.get("label"))
    if not isinstance(label, str) or label not in _LABELS:
        raise ValueError(f"label {brief(label)}; expected 'error' or 'no_error' in error_label or label")
    return EvalItem(
        query=row["input"],
        responses=[text(row, "llm_response")],
        truth=[_LABELS[label]],
        id=f"{task}/{part}/{r.index}",
        subset=task,
    )
