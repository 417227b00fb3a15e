"""grm.jobs and grm.isolation: scoring a dataset into a resumable output, where an item's own failure is an error
row and a fault of the process or its environment stops the job without a row's verdict. The GRM is scripted: each
response scores one more than its length."""

import json

import pytest

from grm import GRM, ScoringOptions
from grm.backends import BackendUnavailableError
from grm.isolation import environment_fault, score_isolated
from grm.jobs import ScoreJob, check_chunks, model_settings
from grm.settings import SettingsMismatch, read_settings
from helpers import ScriptedBackend, by_length, judge_by

ROWS = [{"id": f"r{i}", "query": f"q{i}", "responses": ["a" * (i + 1), "bb"]} for i in range(6)]


class EngineDeadError(RuntimeError):
    """Named as vLLM names the error of an engine whose process died."""


class Faulty(ScriptedBackend):
    """Scores by length; the ``fail_on``-th generate call (1-based) raises ``error`` instead."""

    def __init__(self, error: BaseException | None = None, fail_on: int = 0) -> None:
        super().__init__(judge_by(by_length))
        self.error, self.fail_on = error, fail_on

    def generate(self, requests):
        if self.error is not None and len(self.calls) + 1 == self.fail_on:
            self.calls.append(list(requests))
            raise self.error
        return super().generate(requests)


def write_rows(path, rows=ROWS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def job(inp, out, **kwargs):
    return ScoreJob(inp, out, ScoringOptions(k=2, seed=3), model=model_settings(None), chunk_size=2, **kwargs)


@pytest.mark.parametrize(
    "fault",
    [
        BrokenPipeError(32, "Broken pipe"),
        OSError(28, "No space left on device"),
        MemoryError(),
        BackendUnavailableError("no server answers"),
        EngineDeadError("EngineCore encountered an issue"),
        RuntimeError("CUDA error: an illegal memory access was encountered"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_environment_fault_stops_the_job_and_is_no_row_verdict(tmp_path, fault):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_rows(inp)
    assert environment_fault(fault)
    with pytest.raises(Exception, match="stopped by .*rows written are kept") as stopped:
        job(inp, out).run(GRM(Faulty(fault, fail_on=2)))
    assert stopped.value.__cause__ is fault
    written = read(out)
    assert [r["index"] for r in written] == [0, 1] and not any("error" in r for r in written)  # the first chunk only
    stats = job(inp, out).run(GRM(Faulty()))  # resumed: the unfinished rows are scored, none is an error
    assert (stats.scored, stats.failed, stats.skipped) == (4, 0, 2)
    assert sorted(r["index"] for r in read(out)) == list(range(6)) and not any("error" in r for r in read(out))


def test_an_items_own_failure_is_its_error_row_and_the_others_are_kept():
    class Refusing(ScriptedBackend):
        def generate(self, requests):
            if any("q1" in r.messages[-1]["content"] for r in requests):
                raise ValueError("this prompt cannot be read")
            return super().generate(requests)

    rm = GRM(Refusing(judge_by(by_length)))
    results = score_isolated(rm, [ROWS[0], ROWS[1], ROWS[2]], keys=[0, 1, 2], k=1, seed=0)
    assert isinstance(results[1], ValueError) and [r.mean for r in (results[0], results[2])] == [[2, 3], [4, 3]]
    for fault in (BrokenPipeError(32, "Broken pipe"), KeyboardInterrupt()):
        with pytest.raises(type(fault)):  # from the batch, and from an item scored alone
            score_isolated(GRM(Faulty(fault, fail_on=1)), ROWS[:3], k=1, seed=0)
        with pytest.raises(type(fault)):
            score_isolated(GRM(Faulty(fault, fail_on=2)), [ROWS[0], ROWS[1], {"query": "q", "responses": 7}], k=1)
    assert not environment_fault(ValueError("bad item")) and not environment_fault(RecursionError())


def test_rows_carry_n_drawn_and_judgements_can_be_left_out_and_error_rows_retried(tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_rows(inp, [*ROWS[:3], {"query": "q", "responses": "not a list"}])
    stats = job(inp, out, judgements=False).run(GRM(Faulty()))
    assert (stats.scored, stats.failed, stats.judgements) == (3, 1, 6)
    assert stats.summary() == f"scored 3 rows, 1 failed, 0 skipped as done; 2.00 judgements per row; output in {out}"
    rows = {r["index"]: r for r in read(out)}
    assert "judgements" not in rows[0] and rows[0]["n_drawn"] == 2 and rows[0]["mean"] == [2, 3]
    assert rows[3]["error"].startswith("line 4: responses must be a list")
    with pytest.raises(SettingsMismatch, match="judgements: false then, true now"):
        job(inp, out)

    write_rows(inp, [*ROWS[:3], {"query": "q", "responses": ["fixed"]}])  # the cause of the error row is gone
    assert job(inp, out, judgements=False).run(GRM(Faulty())).scored == 0  # an error row is kept by a resume
    retried = job(inp, out, judgements=False, retry_errors=True)
    assert retried.done == {0: False, 1: False, 2: False}
    stats = retried.run(GRM(Faulty()))
    assert (stats.scored, stats.failed, stats.skipped) == (1, 0, 3)
    assert sorted(r["index"] for r in read(out)) == [0, 1, 2, 3] and read(out)[-1]["mean"] == [6]


def test_a_job_checks_everything_before_it_writes(tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_rows(inp)
    for bad in (
        {"chunk_size": 0},
        {"budget": 1},  # one judgement for a chunk of two rows
        {"budget": 0.25},  # a quarter of k=2: no judgement for a chunk of one row
        {"k_meta": 1},  # without a meta RM
    ):
        with pytest.raises(ValueError):
            ScoreJob(inp, out, ScoringOptions(k=2), model=model_settings(None), **{"chunk_size": 2, **bad})
    with pytest.raises(ValueError, match="k_meta was given without a meta_rm"):
        ScoreJob(inp, out, ScoringOptions(k=2, k_meta=1)).run(GRM(Faulty()))
    assert not out.exists() and not (tmp_path / "out.jsonl.settings.json").exists()
    check_chunks(ScoringOptions(k=2, budget=0.5), 8)  # a fraction of one judgement per row is enough for any chunk


def test_settings_are_recorded_with_the_output_and_the_seed_drawn_is_reused(tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.parquet"
    write_rows(inp)
    first = ScoreJob(inp, out, ScoringOptions(k=2), model=model_settings(None), chunk_size=4)
    seed = first.options.seed
    assert isinstance(seed, int) and first.settings["seed"] == seed and first.settings["input"] == str(inp)
    first.write(rows for rows in [])  # nothing scored yet, but the settings are recorded
    assert read_settings(out) == first.settings
    cache = tmp_path / "out.parquet.cache.jsonl"
    first.run(GRM(Faulty()))
    second = ScoreJob(inp, out, ScoringOptions(k=2), model=model_settings(None), chunk_size=4)
    assert second.options.seed == seed and second.done  # resumed with the seed drawn first
    seeded = ScoreJob(inp, tmp_path / "seeded.jsonl", ScoringOptions(k=2, seed=seed), model=model_settings(None))
    seeded.run(GRM(Faulty()))
    assert read(cache) == read(tmp_path / "seeded.jsonl")  # the unseeded run is repeated by its seed

    import pyarrow.parquet as pq

    metadata = pq.read_schema(out).metadata
    assert json.loads(metadata[b"grm.settings"]) == first.settings
