"""Scoring on a Ray cluster (install extra ``ray``): a pool of GRM replicas, each a Ray actor that loads the model
once and scores whole batches.

- :func:`score_on_ray` is ``grm score`` on a cluster, the same job (:class:`grm.jobs.ScoreJob`): rows stream from
  the input (read on the driver's node by :mod:`grm.sources`, or any ``ray.data.Dataset``) through ``map_batches``
  to the replicas, and each result is appended to the output as it arrives, keyed as ``grm score`` keys it; a
  re-run with the same settings skips the rows written.
- :func:`ray_grm` is a GRM whose engine (and meta RM) is a pool of replica actors, each generation call spread
  over them: what ``grm eval --ray``, ``grm train meta-rm-data --ray`` and RFT sampling on Ray score with.

Each row or item is seeded by the job's seed and its key (:func:`grm.seeding.item_seed`), never by the replica or
batch that scored it, so the output equals a single-process run with the same seed. A replica whose process dies
is restarted by Ray (actors with ``max_restarts=-1``) and its unfinished batches are run again (``max_task_retries
=-1``): a dead replica costs only the batches it held, and a row is written once, when its batch comes back (a
batch Ray runs twice is recognised by the batch: each output row carries its batch's identity).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grm.extras import raise_missing_extra

try:
    import pyarrow as pa
    import ray
    import ray.data
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask
    from ray.util import ActorPool
except ModuleNotFoundError as e:  # pragma: no cover - depends on the install
    raise_missing_extra(e, "grm.distributed")

from grm.backends import Completion, GenerationRequest
from grm.jobs import JobStats, JobStopped, Row, ScoreJob, model_settings, score_rows
from grm.judges import JudgeFormat
from grm.model import GRM
from grm.outputs import STDOUT
from grm.rows import Columns, RowItem, row_item
from grm.scoring import ScoringOptions
from grm.sources import Source

logger = logging.getLogger(__name__)

RAY_LOGGERS = ("ray", "ray.data")
"""Ray's own loggers: errors only, unless the caller asks for more (``verbose``): Ray warns of its settings at
every start (authentication, progress bars off)."""


@dataclass(frozen=True)
class Replica:
    """What each replica loads and the resources it holds: ``model`` and ``backend`` as for
    :meth:`grm.GRM.from_pretrained` (``model_kwargs`` go there too), an optional ``meta_rm`` (path or hub id,
    ``meta_rm_kwargs`` to :meth:`grm.MetaRM.from_pretrained`), and ``num_cpus`` / ``num_gpus`` per replica."""

    model: str | None = None
    backend: str = "transformers"
    model_kwargs: Mapping[str, Any] | None = None
    meta_rm: str | None = None
    meta_rm_kwargs: Mapping[str, Any] | None = None
    num_cpus: float = 1
    num_gpus: float = 0

    def settings(self) -> dict[str, Any]:
        """What the replicas load that changes results, as recorded with an output (:func:`grm.jobs.model_settings`)."""
        return model_settings(self.model, self.backend, self.model_kwargs, self.meta_rm)

    def load(self) -> tuple[Any, Any]:
        """``(grm, meta_rm or None)``, loaded in this process."""
        from grm.meta_rm import MetaRM

        rm = GRM.from_pretrained(self.model, self.backend, **dict(self.model_kwargs or {}))
        meta = None if self.meta_rm is None else MetaRM.from_pretrained(self.meta_rm, **dict(self.meta_rm_kwargs or {}))
        return rm, meta


class _RowScorer:
    """One replica in ``map_batches``: loads the GRM once, then turns each batch of read records (``key``,
    ``where``, pickled ``row``, read ``error``) into output rows (pickled, with their ``key`` and their ``batch``:
    an identity of the batch, the same when Ray runs the batch again)."""

    def __init__(self, replica: Replica, columns: Columns, options: ScoringOptions, judgements: bool) -> None:
        self.rm, self.meta_rm = replica.load()
        self.columns, self.options, self.judgements = columns, options, judgements

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        records = batch.to_pylist()
        rows: list[Row] = []
        for r in records:
            if r["error"] is not None:
                parsed = RowItem(None, None, error=r["error"])
            else:
                parsed = row_item(pickle.loads(r["row"]), r["where"], self.columns)
            rows.append((r["key"], r["where"], parsed))
        out = score_rows(self.rm, rows, self.options, meta_rm=self.meta_rm, judgements=self.judgements)
        keys = [r["key"] for r in records]
        batch_id = hashlib.blake2b(repr(keys).encode(), digest_size=12).hexdigest()
        return {"key": keys, "batch": [batch_id] * len(keys), "row": [pickle.dumps(row) for row in out]}


def score_on_ray(
    data: Any,
    output: str | Path,
    replica: Replica = Replica(),
    options: ScoringOptions | None = None,
    *,
    replicas: int = 2,
    batch_size: int = 64,
    columns: Columns | None = None,
    split: str | None = None,
    subset: str | None = None,
    key: str = "id",
    address: str | None = None,
    verbose: bool = False,
    progress: bool | None = None,
    judgements: bool = True,
    retry_errors: bool = False,
    **overrides: Any,
) -> JobStats:
    """Score the rows of ``data`` with ``replicas`` copies of ``replica`` on a Ray cluster and append ``grm
    score``'s output rows to ``output`` (a JSONL file, or ``.parquet`` written at the end from its JSONL cache): the
    job of :class:`grm.jobs.ScoreJob`, with the same settings recorded and checked, the same rows and accounting.

    ``data`` is anything :class:`grm.sources.Source` reads (a file, a folder, a hub dataset name; ``split`` and
    ``subset`` pick a part), read on the driver's node and keyed by row index as ``grm score`` keys it; or a
    ``ray.data.Dataset``, each row keyed by its ``key`` column, written as the output row's ``index``: the column
    must hold unique integers or strings, checked (one pass over the column) before any replica starts.
    ``batch_size`` rows go to a replica per call; ``options`` (or their fields as keywords: ``k``, ``seed``...)
    score every row; ``judgements`` and ``retry_errors`` as for :class:`~grm.jobs.ScoreJob`. Rows already in
    ``output`` are skipped. ``address`` joins a running cluster (``auto``, ``ray://...``); without it, and without
    a Ray session in this process, a local one is started (and stopped at the end). Ray's logs reach the terminal
    only when ``verbose``.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    if str(output) == STDOUT:
        raise ValueError("--ray writes to a file (rows arrive out of order and a re-run resumes from it), not to -")
    dataset = isinstance(data, ray.data.Dataset)
    if dataset and key not in (data.columns() or [key]):  # columns() is None when Ray cannot tell cheaply
        raise ValueError(f"the dataset has no {key!r} column to key its rows by; it has {data.columns()}")
    job = ScoreJob(
        data,
        output,
        options,
        model=replica.settings(),
        columns=columns,
        split=split,
        subset=subset,
        key=key if dataset else None,
        name="a ray.data.Dataset" if dataset else None,
        chunk_size=batch_size,
        judgements=judgements,
        retry_errors=retry_errors,
        **overrides,
    )
    started = connect(address, replicas * replica.num_cpus, verbose)
    try:
        if dataset:
            _check_keys(data, key)
            records = _keyed(data, key, set(job.done))
        else:
            records = _read(data, split, subset, set(job.done), batch_size)
        scored = records.map_batches(
            _RowScorer,
            fn_constructor_args=(replica, job.columns, job.options, judgements),
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=replicas, max_tasks_in_flight_per_actor=1),
            num_cpus=replica.num_cpus,
            num_gpus=replica.num_gpus,
        )
        return job.write(_once(scored), progress=progress)
    finally:
        if started:
            ray.shutdown()


def _once(scored: ray.data.Dataset) -> Iterator[dict[str, Any]]:
    """The output rows of ``scored`` as they arrive, each once: a row that comes again from the same batch (Ray ran
    the batch again, e.g. to rebuild a lost node's output) is dropped. The keys are unique (checked first), so a
    key that comes back from another batch is a fault, not a repeat: the job stops, with what it wrote kept."""
    batch_of: dict[Any, str] = {}
    try:
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row_key, batch_id, blob in zip(
                batch["key"].to_pylist(), batch["batch"].to_pylist(), batch["row"].to_pylist()
            ):
                if row_key in batch_of:
                    if batch_of[row_key] != batch_id:
                        raise JobStopped(f"row {row_key!r} came back from two different batches")
                    continue
                batch_of[row_key] = batch_id
                yield pickle.loads(blob)
    except ray.exceptions.RayError as e:  # a replica or task that failed for good
        raise JobStopped(f"Ray stopped the job: {type(e).__name__}: {str(e).splitlines()[0][:500]}") from e


def _check_keys(dataset: ray.data.Dataset, key: str) -> None:
    """ValueError naming the ``key`` column unless it holds integers or strings, each once (one pass over the
    column, before any replica starts)."""
    schema = dataset.schema()
    if schema is not None and key in schema.names:
        kind = schema.types[schema.names.index(key)]
        if isinstance(kind, pa.DataType) and not (
            pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
        ):
            raise ValueError(
                f"the {key!r} column holds {kind} values; a row's key must be an integer or a string (it seeds the "
                "row and names it in the output): cast the column, or key the rows by another"
            )
    seen: set[Any] = set()
    for batch in dataset.select_columns([key]).iter_batches(batch_format="pyarrow", batch_size=65536):
        for value in batch[key].to_pylist():
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(f"the {key!r} column must hold integers or strings, got {value!r:.60}")
            if value in seen:
                raise ValueError(
                    f"the {key!r} column repeats {value!r:.60}: each row needs a key of its own (it seeds the row and "
                    "names it in the output)"
                )
            seen.add(value)


def connect(address: str | None, num_cpus: float, verbose: bool = False) -> bool:
    """Join the cluster at ``address``, or start a local one with at least ``num_cpus`` CPUs (all this machine's
    when it has more), unless this process is connected already; True when this call connected (so the caller
    shuts down). Ray's progress bars and INFO logs are silenced unless ``verbose``."""
    level = logging.INFO if verbose else logging.ERROR
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose
    context.print_on_execution_start = verbose
    context.enable_auto_log_stats = False
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": verbose, "logging_level": level}
    if address is None:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, math.ceil(num_cpus))
    ray.init(address=address, **kwargs)
    return True


def _read(data: Any, split: str | None, subset: str | None, done: set[Any], block: int) -> ray.data.Dataset:
    """The source's records not in ``done``, as a dataset read by one task on the driver's node."""
    return ray.data.read_datasource(_SourceDatasource(data, split, subset, done, block), num_cpus=0)


def _record_schema(key_type: pa.DataType) -> pa.Schema:
    return pa.schema([("key", key_type), ("where", pa.string()), ("row", pa.binary()), ("error", pa.string())])


class _SourceDatasource(Datasource):
    """A :class:`grm.sources.Source` read in order by one task on the driver's node (where its files are), in
    blocks of ``block`` records, the rows keyed in ``done`` left out."""

    def __init__(self, data: Any, split: str | None, subset: str | None, done: set[Any], block: int) -> None:
        self.args = (str(data), split, subset, done, block)

    @property
    def supports_distributed_reads(self) -> bool:
        return False

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None)
        args = self.args
        return [ReadTask(lambda: _source_records(*args), meta, schema=_record_schema(pa.int64()))]


def _source_records(data: str, split: str | None, subset: str | None, done: set[Any], block: int) -> Iterator[pa.Table]:
    chunk: list[dict[str, Any]] = []
    for record in Source(data, split=split, name=subset):
        if record.position in done:
            continue
        row = None if record.row is None else pickle.dumps(record.row)
        chunk.append({"key": record.position, "where": record.where, "row": row, "error": record.error})
        if len(chunk) >= block:
            yield pa.Table.from_pylist(chunk, schema=_record_schema(pa.int64()))
            chunk = []
    if chunk:
        yield pa.Table.from_pylist(chunk, schema=_record_schema(pa.int64()))


def _keyed(dataset: ray.data.Dataset, key: str, done: set[Any]) -> ray.data.Dataset:
    """A user's dataset as records keyed by its ``key`` column, without the rows in ``done``."""
    return dataset.map_batches(
        _dataset_records, fn_kwargs={"key": key, "done": done}, batch_format="pyarrow", batch_size=None
    )


def _dataset_records(batch: pa.Table, key: str, done: set[Any]) -> pa.Table:
    chunk = []
    for row in batch.to_pylist():
        row_key = row[key]  # an integer or a string (see _check_keys)
        if row_key not in done:
            chunk.append({"key": row_key, "where": f"{key} {row_key}", "row": pickle.dumps(row), "error": None})
    return pa.Table.from_pylist(chunk, schema=_record_schema(batch.schema.field(key).type))


def ray_grm(
    replica: Replica = Replica(),
    *,
    replicas: int = 2,
    address: str | None = None,
    verbose: bool = False,
) -> tuple[GRM, RayMetaRM | None]:
    """A GRM whose engine is ``replicas`` replica actors (each loads ``replica`` once) and, when ``replica`` names
    one, a meta RM that rates on the same actors: ``(grm, meta_rm or None)``. The GRM renders, parses and votes
    here, as any GRM; each generation call's requests are split into one part per replica and run on the
    replicas' engines, and a meta RM's rating call likewise. Every request carries its own seed (from its item's
    key), so the results equal one process's with the same seed. A replica whose process dies is restarted and
    its part run again. ``grm.backend.close()`` releases the actors and the local cluster, if this call started
    one (else they go when the Ray session ends)."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    started = connect(address, replicas * replica.num_cpus, verbose)
    remote = ray.remote(num_cpus=replica.num_cpus, num_gpus=replica.num_gpus, max_restarts=-1, max_task_retries=-1)
    actors = [remote(_Engine).remote(replica) for _ in range(replicas)]
    judge, score_range, max_new_tokens, max_retries = ray.get(actors[0].settings.remote())
    backend = RayBackend(actors, started)
    grm = GRM(backend, judge=judge, score_range=score_range, max_new_tokens=max_new_tokens, max_retries=max_retries)
    return grm, (RayMetaRM(actors) if replica.meta_rm is not None else None)


def _spread(actors: list[Any], method: str, work: Sequence[Any]) -> list[Any]:
    """``work`` split into one part per actor, each part given to ``actor.<method>``; the results in order."""
    if not work:
        return []
    step = math.ceil(len(work) / len(actors))
    parts = [list(work[i : i + step]) for i in range(0, len(work), step)]
    pool = ActorPool(actors)
    return [r for part in pool.map(lambda a, part: getattr(a, method).remote(part), parts) for r in part]


class RayBackend:
    """A :class:`grm.backends.Backend` whose ``generate`` runs on replica actors (see :func:`ray_grm`)."""

    def __init__(self, actors: list[Any], owns_cluster: bool = False) -> None:
        self.actors, self.owns_cluster = actors, owns_cluster

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        return _spread(self.actors, "generate", requests)

    def close(self) -> None:
        """Release the replicas (and the local cluster :func:`ray_grm` started)."""
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.owns_cluster:
            ray.shutdown()
            self.owns_cluster = False


class RayMetaRM:
    """A meta RM (:class:`grm.scoring.JudgementRater`) whose ``score_batch`` runs on replica actors."""

    def __init__(self, actors: list[Any]) -> None:
        self.actors = actors

    def score_batch(self, entries: Sequence[Any]) -> list[list[float]]:
        return _spread(self.actors, "rate", entries)


class _Engine:
    """One replica of :func:`ray_grm`: the GRM's engine and the meta RM, loaded once."""

    def __init__(self, replica: Replica) -> None:
        self.rm, self.meta_rm = replica.load()

    def settings(self) -> tuple[JudgeFormat, tuple[int, int], int, int]:
        """The replica's judge format (its template included), score range and generation defaults."""
        return self.rm.judge, self.rm.score_range, self.rm.max_new_tokens, self.rm.max_retries

    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        return self.rm.backend.generate(requests)

    def rate(self, entries: list[Any]) -> list[list[float]]:
        return self.meta_rm.score_batch(entries)
