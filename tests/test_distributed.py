"""grm.distributed on a local Ray cluster (127.0.0.1, 2 CPUs) with two CPU replicas of the shipped GRM: the output
equals a single-process ``grm score`` with the same seed, row for row, when a replica is killed mid-job and when a
crashed job is resumed.

Bitwise equality needs the same arithmetic on both sides (docs/scoring.md, Reproducibility): every run here uses
the transformers backend with ``batch_size=1`` (no padding) and one torch thread (a replica with one CPU gets
``OMP_NUM_THREADS=1`` from Ray; the in-process runs set it), else a greedy token at a near tie may flip."""

import json
import os
import shutil
import signal
import threading
import time

import psutil
import pytest

from grm.cli import main
from grm.synthetic import make_examples

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

ROWS = 7  # 5 synthetic items, a preference pair, a line that is not JSON


ONE_ROW = ["--batch-size", "1"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    lines = [json.dumps({"id": e.id, "query": e.query, "responses": e.responses}) for e in make_examples(5, 31)]
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"prompt": "What is 6 + 7?", "chosen": "13", "rejected": "It is 12."}))
    (folder / "in.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def score(data, out, *extra):
    argv = [
        "score",
        "--input",
        str(data / "in.jsonl"),
        "--output",
        str(out),
        "--seed",
        "3",
        "-k",
        "2",
        *ONE_ROW,
        *extra,
    ]
    return main(argv)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(data):
    """A single-process ``grm score``, no Ray."""
    out = data / "reference.jsonl"
    assert score(data, out, "--chunk-size", "4") == 1  # the line that is not JSON is an error row
    by_index = {r["index"]: r for r in rows(out)}
    assert sorted(by_index) == list(range(ROWS)) and "line 3: not valid JSON" in by_index[2]["error"]
    assert by_index[4]["winner"] in ("chosen", "rejected", "tie") and sum(r.get("n_valid", 0) for r in rows(out)) > 0
    return by_index


def replica_processes():
    return [p for p in psutil.process_iter(["cmdline"]) if "_RowScorer" in " ".join(p.info["cmdline"] or [])]


def test_a_replica_killed_mid_job_costs_only_its_batch(cluster, data, reference, tmp_path):
    from grm.distributed import Replica, score_on_ray

    out, killed = tmp_path / "out.jsonl", {}

    def kill_one_replica_after_the_first_row():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not killed:
            written = len(out.read_text().splitlines()) if out.exists() else 0
            busy = replica_processes()
            if written >= 1 and len(busy) == 2:
                killed["rows_written_before"] = written
                killed["pid"] = busy[0].pid
                os.kill(busy[0].pid, signal.SIGKILL)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_replica_after_the_first_row, daemon=True)
    killer.start()
    stats = score_on_ray(
        data / "in.jsonl",
        out,
        Replica(model_kwargs={"batch_size": 1}),
        replicas=2,
        batch_size=1,
        progress=False,
        seed=3,
        k=2,
        shuffle=True,
    )
    killer.join(timeout=5)
    assert killed and killed["rows_written_before"] < ROWS  # the replica died mid-job
    assert not psutil.pid_exists(killed["pid"]) or psutil.Process(killed["pid"]).status() == psutil.STATUS_ZOMBIE
    got = rows(out)
    assert sorted(r["index"] for r in got) == list(range(ROWS))  # every row exactly once
    assert {r["index"]: r for r in got} == reference  # rewards, judgements, errors: as one process wrote them
    assert (stats.scored, stats.failed, stats.skipped) == (ROWS - 1, 1, 0)


def test_a_crashed_job_resumes_from_the_rows_written(cluster, data, reference, tmp_path, caplog):
    out = tmp_path / "out.jsonl"
    first = [json.dumps(reference[i]) for i in (0, 2, 5)]
    out.write_text("\n".join(first) + "\n" + json.dumps(reference[1])[:50])  # three rows, then half a line
    # the single-process run's settings: the same with and without --ray (the chunk size is not a setting)
    shutil.copy(data / "reference.jsonl.settings.json", tmp_path / "out.jsonl.settings.json")
    with caplog.at_level("INFO", logger="grm"):  # a resume with another seed is refused, as without --ray
        assert score(data, out, "--ray", "--replicas", "2", "--seed", "4") == 2
    assert "seed: 3 then, 4 now" in caplog.text
    assert rows(out) == [json.loads(line) for line in first]  # nothing written (the half line dropped)
    caplog.clear()
    with caplog.at_level("INFO", logger="grm"):
        assert score(data, out, "--ray", "--replicas", "2", "--chunk-size", "2") == 0  # the error row was kept
    assert "grm score on Ray (2 replicas): scored 4 rows, 0 failed, 3 skipped as done" in caplog.text
    got = rows(out)
    assert sorted(r["index"] for r in got) == list(range(ROWS))
    assert {r["index"]: r for r in got} == reference


def test_grm_eval_and_meta_rm_data_on_ray_equal_one_process(cluster, tmp_path):
    from grm.assets import default_meta_rm_path

    examples = make_examples(3, 32, response_weights=(0, 1, 0, 0))  # two responses each, one right
    pairs = tmp_path / "pairs.jsonl"
    with pairs.open("w") as f:
        for i, e in enumerate(examples):
            right = e.truth.index(max(e.truth))
            row = {"prompt": e.query, "chosen": e.responses[right], "rejected": e.responses[1 - right]}
            f.write(json.dumps({"id": i, **row, "subset": "math-prm"}) + "\n")
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in examples))
    meta = ["--meta-rm", str(default_meta_rm_path()), "--k-meta", "1"]
    ray_args = ["--ray", "--replicas", "2"]
    caches = []
    for extra in ([], ray_args):
        out = tmp_path / f"eval{len(extra)}"
        argv = ["eval", "--benchmark", "rewardbench", "--data", str(pairs), "-k", "2", "--seed", "1"]
        assert main([*argv, "--bootstrap", "10", "--output", str(out), *meta, *ONE_ROW, *extra]) == 0
        caches.append(rows(out / "judgements.jsonl"))
    assert len(caches[0]) == 3 and all(len(c["reward"]["meta_scores"]) == 2 for c in caches[0])
    meta_scores = [[c["reward"].pop("meta_scores") for c in cache] for cache in caches]
    assert caches[1] == caches[0]  # judgements, votes, the judgements the meta RM kept
    # the meta RM pads a batch to its longest judgement, and float32 sums differ in the last bits with the padding
    assert meta_scores[1] == [pytest.approx(m, rel=1e-5, abs=1e-6) for m in meta_scores[0]]

    outputs = []
    for extra in ([], ray_args):
        out = tmp_path / f"meta-rm-data{len(extra)}.jsonl"
        argv = ["train", "meta-rm-data", "--input", str(labelled), "--output", str(out), "-k", "2", "--seed", "0"]
        assert main([*argv, *ONE_ROW, *extra]) == 0
        outputs.append(rows(out))
    assert len(outputs[0]) == 6 and outputs[1] == outputs[0]
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2  # each command released its replicas


def test_rft_sampling_on_ray_equals_one_process(cluster, tmp_path):
    from spct_helpers import build_first_wins_grm

    model, template, data = build_first_wins_grm(tmp_path)
    records = []
    for replicas in (0, 2):
        out = tmp_path / f"out{replicas}"
        config = tmp_path / f"rft{replicas}.yaml"
        config.write_text(
            f"model_name_or_path: {model}\ndata_path: {data}\ntemplate: {template}\noutput_dir: {out}\n"
            "n_rft: 2\nseed: 0\nsample_max_new_tokens: 30\nsample_backend_kwargs: {progress: false, batch_size: 1}\n"
            f"hinted_sampling: fallback\nskip_training: true\nuse_cpu: true\nsample_replicas: {replicas}\n"
        )
        assert main(["train", "rft", "--config", str(config)]) == 0
        records.append([rows(out / "rft_data" / name) for name in ("records.jsonl", "sft.jsonl")])
    assert len(records[0][0]) == 4 and any(s["hinted"] for r in records[0][0] for s in r["samples"])
    assert records[1] == records[0]  # unhinted and hinted samples, kept rows: as in one process


def test_a_ray_dataset_is_keyed_by_its_id_column_and_resumes(cluster, tmp_path):
    from grm import GRM, ScoringOptions
    from grm.distributed import Replica, score_on_ray
    from grm.jobs import score_rows
    from grm.rows import row_item

    examples = make_examples(3, 33)
    items = [{"id": f"q{i}", "query": e.query, "responses": e.responses} for i, e in enumerate(examples)]
    local = score_rows(
        GRM.from_pretrained(progress=False, batch_size=1),
        [(it["id"], f"id {it['id']}", row_item(it, f"id {it['id']}")) for it in items],
        ScoringOptions(seed=5),
    )
    out, replica = tmp_path / "out.jsonl", Replica(model_kwargs={"batch_size": 1})
    stats = score_on_ray(
        ray.data.from_items(items[1:2]), out, replica, replicas=1, batch_size=1, progress=False, seed=5
    )
    assert (stats.scored, stats.skipped) == (1, 0)  # one row done before
    stats = score_on_ray(ray.data.from_items(items), out, replica, replicas=2, batch_size=1, progress=False, seed=5)
    assert (stats.scored, stats.skipped) == (2, 1)
    assert sorted(rows(out), key=lambda r: r["index"]) == local  # seeded by the id, as score_batch(keys=ids)
    with pytest.raises(ValueError, match="no 'key' column to key its rows by"):
        score_on_ray(ray.data.from_items(items), tmp_path / "other.jsonl", Replica(), replicas=1, key="key")


def test_ray_dataset_keys_are_checked_before_any_replica_starts(cluster, tmp_path):
    from grm.distributed import Replica, score_on_ray

    never = Replica(model=str(tmp_path / "no-such-model"))  # a replica that started would fail to load it
    rows_ = [{"id": i, "query": "q", "responses": ["a", "b"]} for i in range(4)]
    repeated = ray.data.from_items([*rows_, {"id": 2, "query": "again", "responses": ["c"]}])
    with pytest.raises(ValueError, match="the 'id' column repeats 2: each row needs a key of its own"):
        score_on_ray(repeated, tmp_path / "a.jsonl", never, replicas=1, seed=0)
    floats = ray.data.from_items([{**r, "id": r["id"] + 0.5} for r in rows_])
    with pytest.raises(
        ValueError, match="the 'id' column holds double values; a row's key must be an integer or a str"
    ):
        score_on_ray(floats, tmp_path / "b.jsonl", never, replicas=1, seed=0)
    assert not (tmp_path / "a.jsonl").exists() and not (tmp_path / "b.jsonl").exists()
