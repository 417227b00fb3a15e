"""Scoring on a Ray cluster (install extra ``ray``): a pool of GRM replicas, each a Ray actor that loads the model
once and scores whole batches.

- :func:`score_on_ray` is ``grm score`` on a cluster: rows stream from the input (read on the driver's node by
  :mod:`grm.sources`, or any ``ray.data.Dataset``) through ``map_batches`` to the replicas, and each result is
  appended to the output as it arrives, keyed as ``grm score`` keys it; a re-run skips the rows written.
- :class:`RayGRM` is a GRM whose ``score_batch`` spreads a batch over replica actors: what ``grm eval --ray`` and
  the training data builders score with.

Each row or item is seeded by the job's seed and its key (:func:`grm.seeding.item_seed`), never by the replica or
batch that scored it, so the output equals a single-process run with the same seed. A replica whose process dies
is restarted by Ray (actors with ``max_restarts=-1``) and its unfinished batches are run again (``max_task_retries
=-1``): a dead replica costs only the batches it held, and a row is written once, when its batch comes back.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

try:
    import pyarrow as pa
    import ray
    import ray.data
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask
    from ray.util import ActorPool
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(f"grm.distributed needs Ray: pip install 'grm[ray]' ({e})") from e

from grm.cli import ERROR_WARNINGS
from grm.isolation import score_rows
from grm.outputs import ScoreOutput
from grm.rows import Columns, RowItem, row_item
from grm.sources import Source
from grm.types import Item, Reward

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

    def load(self) -> tuple[Any, Any]:
        """``(grm, meta_rm or None)``, loaded in this process."""
        from grm.meta_rm import MetaRM
        from grm.model import GRM

        rm = GRM.from_pretrained(self.model, self.backend, **dict(self.model_kwargs or {}))
        meta = None if self.meta_rm is None else MetaRM.from_pretrained(self.meta_rm, **dict(self.meta_rm_kwargs or {}))
        return rm, meta


class _RowScorer:
    """One replica in ``map_batches``: loads the GRM once, then turns each batch of read records (``key``,
    ``where``, pickled ``row``, read ``error``) into output rows (pickled, with their ``key``). A job uses a
    subclass made by :meth:`bound`, which carries the job's settings in the class: constructor arguments would be
    kept in the object store, and a replica restarted after they were lost could not start."""

    setup: tuple[Replica, Columns, dict[str, Any]]

    @classmethod
    def bound(cls, replica: Replica, columns: Columns, options: Mapping[str, Any]) -> type[_RowScorer]:
        return type(cls.__name__, (cls,), {"setup": (replica, columns, dict(options))})

    def __init__(self) -> None:
        replica, self.columns, self.options = self.setup
        self.rm, self.meta_rm = replica.load()

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        records = batch.to_pylist()
        rows: list[tuple[Any, str, RowItem]] = []
        for r in records:
            if r["error"] is not None:
                parsed = RowItem(None, None, error=r["error"])
            else:
                parsed = row_item(pickle.loads(r["row"]), r["where"], self.columns)
            rows.append((r["key"], r["where"], parsed))
        out = score_rows(self.rm, rows, meta_rm=self.meta_rm, **self.options)
        return {"key": [r["key"] for r in records], "row": [pickle.dumps(row) for row in out]}


@dataclass
class RayScoreStats:
    """What :func:`score_on_ray` did: rows ``scored`` and ``failed`` (error rows) now, ``skipped`` as already
    written by an earlier run."""

    scored: int = 0
    failed: int = 0
    skipped: int = 0


def score_on_ray(
    data: Any,
    output: str | Path,
    replica: Replica = Replica(),
    *,
    replicas: int = 2,
    batch_size: int = 64,
    columns: Columns | None = None,
    split: str | None = None,
    subset: str | None = None,
    key: str = "id",
    address: str | None = None,
    verbose: bool = False,
    progress: bool = True,
    **options: Any,
) -> RayScoreStats:
    """Score the rows of ``data`` with ``replicas`` copies of ``replica`` on a Ray cluster and append ``grm
    score``'s output rows to ``output`` (a JSONL file, or ``.parquet`` written at the end from its JSONL cache).

    ``data`` is anything :class:`grm.sources.Source` reads (a file, a folder, a hub dataset name; ``split`` and
    ``subset`` pick a part), read on the driver's node and keyed by row index as ``grm score`` keys it; or a
    ``ray.data.Dataset``, each row keyed by its ``key`` column (unique integers or strings; written as the output
    row's ``index``). ``batch_size`` rows go to a replica per call; ``options`` (``k``, ``seed``, ``temperature``,
    ``shuffle``, ``k_meta``) to ``score_batch``. Rows already in ``output`` are skipped. ``address`` joins a
    running cluster (``auto``, ``ray://...``); without it, and without a Ray session in this process, a local one
    is started (and stopped at the end). Ray's logs reach the terminal only when ``verbose``.
    """
    if replicas < 1 or batch_size < 1:
        raise ValueError(f"replicas and batch_size must be >= 1, got {replicas} and {batch_size}")
    source = None if isinstance(data, ray.data.Dataset) else Source(data, split=split, name=subset)
    if source is not None and split is None and len(source.splits) > 1:
        raise ValueError(f"{data} has the splits {source.splits}: choose one")
    out = ScoreOutput(output)
    done = out.finished("index", keep=lambda row: "error" in row)
    if done:
        logger.info("%s: %d rows already done (%d with errors)", out, len(done), sum(done.values()))
    stats = RayScoreStats(skipped=len(done))
    total = None if source is None else source.total
    started = connect(address, replicas * replica.num_cpus, verbose)
    try:
        records = _read(data, split, subset, set(done), batch_size) if source else _keyed(data, key, set(done))
        scored = records.map_batches(
            _RowScorer.bound(replica, columns or Columns(), options),
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=replicas, max_tasks_in_flight_per_actor=1),
            num_cpus=replica.num_cpus,
            num_gpus=replica.num_gpus,
        )
        written: set[Any] = set(done)
        with (
            out.writer() as writer,
            tqdm(desc="score", unit="row", total=total, initial=len(done), disable=not progress) as bar,
        ):
            for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row_key, blob in zip(batch["key"].to_pylist(), batch["row"].to_pylist()):
                    if row_key in written:  # a batch Ray ran twice (e.g. a lost node's output rebuilt)
                        continue
                    written.add(row_key)
                    row = pickle.loads(blob)
                    writer.write(row)
                    if "error" in row:
                        stats.failed += 1
                        if stats.failed <= ERROR_WARNINGS:
                            logger.warning("%s", row["error"])
                    else:
                        stats.scored += 1
                    bar.update(1)
    finally:
        if started:
            ray.shutdown()
    out.finish()
    return stats


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
    if key not in batch.column_names:
        raise ValueError(f"the dataset has no {key!r} column to key its rows by; it has {batch.column_names}")
    chunk = []
    for row in batch.to_pylist():
        row_key = row[key]
        if isinstance(row_key, bool) or not isinstance(row_key, int | str):
            raise ValueError(f"the {key!r} column must hold unique integers or strings, got {row_key!r:.60}")
        if row_key not in done:
            chunk.append({"key": row_key, "where": f"{key} {row_key}", "row": pickle.dumps(row), "error": None})
    return pa.Table.from_pylist(chunk, schema=_record_schema(batch.schema.field(key).type))


class RayGRM:
    """A GRM whose :meth:`score_batch` spreads each batch over ``replicas`` replica actors (``replica`` says what
    each loads and holds) and returns the rewards in order: a call's items are split into one part per replica, or
    into parts of ``batch_size``. Each item is seeded by its key as :meth:`grm.GRM.score_batch` seeds it, so the
    rewards equal one process's. With a meta RM in ``replica``, pass :attr:`meta_rm` as ``score_batch``'s
    ``meta_rm`` to have the replicas' own copy rate the judgements. A replica whose process dies is restarted and
    its part scored again. Call :meth:`close` (or use ``with``) to release the actors and, if it started one, the
    local cluster."""

    def __init__(
        self,
        replica: Replica = Replica(),
        *,
        replicas: int = 2,
        batch_size: int | None = None,
        address: str | None = None,
        verbose: bool = False,
    ) -> None:
        if replicas < 1 or (batch_size is not None and batch_size < 1):
            raise ValueError(f"replicas and batch_size must be >= 1, got {replicas} and {batch_size}")
        self.batch_size = batch_size
        self._started = connect(address, replicas * replica.num_cpus, verbose)
        actor = ray.remote(num_cpus=replica.num_cpus, num_gpus=replica.num_gpus, max_restarts=-1, max_task_retries=-1)
        self._actors = [actor(_ItemScorer).remote(replica) for _ in range(replicas)]
        self.meta_rm = _ReplicaMetaRM() if replica.meta_rm is not None else None
        self.score_range: tuple[int, int] = ray.get(self._actors[0].score_range.remote())

    def score_batch(
        self,
        items: Sequence[Any],
        options: Any = None,
        *,
        meta_rm: Any = None,
        keys: Sequence[int | str] | None = None,
        **overrides: Any,
    ) -> list[Reward]:
        """As :meth:`grm.GRM.score_batch`, the batch split over the replicas; ``meta_rm`` may only be None or
        :attr:`meta_rm` (a meta RM object cannot travel to the replicas: name it in the :class:`Replica`)."""
        if meta_rm is not None and meta_rm is not self.meta_rm:
            raise ValueError("a RayGRM's replicas use their own meta RM: pass RayGRM.meta_rm, or name it in Replica")
        items = [Item.coerce(it) for it in items]
        keys = list(range(len(items))) if keys is None else list(keys)
        if len(keys) != len(items):
            raise ValueError(f"{len(keys)} keys for {len(items)} items")
        step = self.batch_size or max(1, math.ceil(len(items) / len(self._actors)))
        parts = [(items[i : i + step], keys[i : i + step]) for i in range(0, len(items), step)]
        pool = ActorPool(self._actors)
        extra = {"options": options, "use_meta_rm": meta_rm is not None, **overrides}
        results = pool.map(lambda a, part: a.score.remote(part[0], part[1], extra), parts)
        out: list[Reward] = []
        for part in results:
            out.extend(part)
        return out

    def close(self) -> None:
        """Release the replicas (and the local cluster this object started)."""
        for a in self._actors:
            ray.kill(a)
        self._actors = []
        if self._started:
            ray.shutdown()
            self._started = False

    def __enter__(self) -> RayGRM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ReplicaMetaRM:
    """Stands for the meta RM each replica of a :class:`RayGRM` loaded."""


class _ItemScorer:
    """One replica of a :class:`RayGRM`."""

    def __init__(self, replica: Replica) -> None:
        self.rm, self.meta_rm = replica.load()

    def score_range(self) -> tuple[int, int]:
        return self.rm.score_range

    def score(self, items: list[Item], keys: list[int | str], extra: dict[str, Any]) -> list[Reward]:
        extra = dict(extra)
        meta = self.meta_rm if extra.pop("use_meta_rm") else None
        return self.rm.score_batch(items, extra.pop("options"), meta_rm=meta, keys=keys, **extra)
