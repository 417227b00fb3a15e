"""Scoring a dataset: the one job behind ``grm score`` and ``grm score --ray`` (:mod:`grm.distributed`).

A :class:`ScoreJob` reads rows from a source (:mod:`grm.sources`: files, folders, hub datasets), scores them in
chunks of ``chunk_size`` with :func:`score_rows` (one bad row becomes an error row; a fault of the environment
stops the job), and appends one output row per input row to a resumable output (:mod:`grm.outputs`) whose settings
are recorded beside it (:mod:`grm.settings`): a re-run with the same settings skips the rows written, one with
other settings is refused. Building the job checks everything (options, input, output, settings) before any model
is loaded or anything written; :meth:`ScoreJob.run` scores in this process, :meth:`ScoreJob.write` writes rows
scored elsewhere (Ray's replicas) with the same accounting: counts, the first :data:`ERROR_WARNINGS` errors logged,
a summary (:class:`JobStats`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grm.isolation import environment_fault, score_isolated
from grm.outputs import ScoreOutput
from grm.progress import progress_bar
from grm.rows import Columns, RowItem, row_item, verdict
from grm.scoring import ScoringOptions, check_meta_rm, resolve_options
from grm.settings import resolve_settings, write_settings
from grm.sources import Source
from grm.types import Reward

logger = logging.getLogger("grm")

ERROR_WARNINGS = 10
"""Error rows logged one by one by a job; the rest are only counted (each is in the output)."""

Row = tuple[Any, str, RowItem]
"""A row read for scoring: ``(key, where, parsed)``; ``key`` is written as the output row's ``index`` and seeds the
row, ``where`` names it in messages (``line 7``)."""


class JobStopped(RuntimeError):
    """A job stopped by a fault of the process or its environment (:func:`grm.isolation.environment_fault`); the
    rows written before it are kept, and running the job again resumes."""


@dataclass
class JobStats:
    """What a job did: rows ``scored`` and ``failed`` (error rows) now, ``skipped`` as written by an earlier run,
    ``judgements`` drawn for the rows scored now (resamples included), where the ``output`` is, and whether it was
    ``closed`` (standard output closed by its reader, so the job stopped early)."""

    scored: int = 0
    failed: int = 0
    skipped: int = 0
    judgements: int = 0
    output: str = ""
    closed: bool = False

    def summary(self) -> str:
        """One line for a person: the counts, judgements per row, where the output is."""
        per_row = f"; {self.judgements / self.scored:.2f} judgements per row" if self.scored else ""
        return (
            f"scored {self.scored} rows, {self.failed} failed, {self.skipped} skipped as done{per_row}; "
            f"output in {self.output}"
        )


def model_settings(
    model: str | Path | None,
    backend: str = "transformers",
    kwargs: Mapping[str, Any] | None = None,
    meta_rm: str | Path | None = None,
) -> dict[str, Any]:
    """The settings of a model that change what it scores, as recorded with an output: the GRM (``model``,
    ``backend``, and of :meth:`grm.GRM.from_pretrained`'s ``kwargs`` the ``judge``, ``template``, ``gguf_file``,
    ``score_range``, ``dtype``, ``max_new_tokens`` and ``max_retries``) and the ``meta_rm``. A local path is recorded
    absolute; None means the default (the shipped GRM, the model's template...)."""
    kwargs = dict(kwargs or {})
    template = kwargs.get("template")
    return {
        "model": _where(model),
        "backend": backend,
        "judge": getattr(kwargs.get("judge"), "name", kwargs.get("judge")),
        "gguf_file": kwargs.get("gguf_file"),
        "template": getattr(template, "name", None)
        if template is not None and not isinstance(template, str | Path)
        else _where(template),
        "score_range": kwargs.get("score_range"),
        "dtype": None if kwargs.get("dtype") is None else str(kwargs["dtype"]),
        "max_new_tokens": kwargs.get("max_new_tokens"),
        "max_retries": kwargs.get("max_retries"),
        "meta_rm": _where(meta_rm),
    }


def _where(value: str | Path | None) -> str | None:
    """A local path made absolute (so that the same file compares equal from any folder); else as given."""
    if value is None:
        return None
    return str(Path(value).resolve()) if Path(value).exists() else str(value)


def error_row(key: Any, row_id: Any, error: str) -> dict[str, Any]:
    """The output row of a row that could not be read or scored."""
    return {"index": key, "id": row_id, "error": error}


def score_rows(
    rm: Any,
    rows: Sequence[Row],
    options: ScoringOptions,
    *,
    meta_rm: Any = None,
    judgements: bool = True,
) -> list[dict[str, Any]]:
    """The output rows of ``rows``: the readable ones scored together by :func:`grm.isolation.score_isolated`, each
    under its key (so a row's result does not depend on the rows scored with it); a row that could not be read or
    scored alone gets :func:`error_row`, its error naming the row. A scored row holds ``index``, ``id``, the
    :class:`~grm.types.Reward`'s fields (without ``judgements`` unless ``judgements``), ``n_drawn``, and for a
    preference pair ``winner`` and ``margin``. A fault of the environment is raised (nothing is returned)."""
    readable = [(key, where, parsed) for key, where, parsed in rows if parsed.item is not None]
    results = iter(
        score_isolated(
            rm, [p.item for _, _, p in readable], keys=[k for k, _, _ in readable], options=options, meta_rm=meta_rm
        )
        if readable
        else []
    )
    out = []
    for key, where, parsed in rows:
        result = next(results) if parsed.item is not None else parsed.error
        if isinstance(result, Reward):
            row = {"index": key, "id": parsed.id, **result.to_dict(), "n_drawn": result.n_drawn}
            if not judgements:
                del row["judgements"]
            out.append(row | verdict(result) if parsed.shape == "pair" else row)
        else:
            error = result if isinstance(result, str) else f"{where}: scoring failed: {type(result).__name__}: {result}"
            out.append(error_row(key, parsed.id, error))
    return out


def check_chunks(options: ScoringOptions, chunk_size: int) -> None:
    """ValueError unless ``chunk_size`` is a whole number >= 1 and a budget gives every row of any chunk (1 to
    ``chunk_size`` rows) a judgement: else each row of such a chunk would fail."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a whole number >= 1, got {chunk_size!r}")
    for n in {1, chunk_size}:
        try:
            options.budget_for(n)
        except ValueError as e:
            raise ValueError(
                f"{e}: a chunk of {n} rows could not be scored; raise the budget or lower the chunk size"
            ) from None


class ScoreJob:
    """Score the rows of ``data`` into ``output``, resumably (see the module's docstring).

    - ``data``: anything :class:`grm.sources.Source` reads (``split`` and ``subset`` pick a part; a source with
      several splits needs one), each row keyed by its position; or rows read elsewhere (a ``ray.data.Dataset``
      keyed by its ``key`` column, recorded as ``name``), which :meth:`write` then takes scored.
    - ``output``: a JSONL file (appended to), a ``.parquet`` file (written at the end from ``<output>.cache.jsonl``)
      or ``-`` (standard output; nothing to resume).
    - ``options`` (or their fields as keywords) score every row; ``model`` describes the model
      (:func:`model_settings`; without it the model is not recorded, and a resume cannot tell a different one),
      recorded with the output beside the options, the input and the ``columns``. An unseeded job draws a seed, or
      resumes with the one recorded.
    - ``judgements=False`` leaves the judgements out of the rows; ``retry_errors`` scores again the rows that got
      an error in an earlier run (they are removed from the output first).

    Raises ValueError (a :class:`grm.settings.SettingsMismatch` for a resume with other settings) before anything
    is loaded or written.
    """

    def __init__(
        self,
        data: Any,
        output: str | Path,
        options: ScoringOptions | None = None,
        *,
        model: Mapping[str, Any] | None = None,
        columns: Columns | None = None,
        split: str | None = None,
        subset: str | None = None,
        key: str | None = None,
        name: str | None = None,
        chunk_size: int = 64,
        judgements: bool = True,
        retry_errors: bool = False,
        **overrides: Any,
    ) -> None:
        options = resolve_options(options, overrides)
        model = dict(model or {})
        if model:
            check_meta_rm(options, rated=model.get("meta_rm") is not None)
        check_chunks(options, chunk_size)
        self.columns, self.chunk_size, self.judgements = columns or Columns(), chunk_size, judgements
        self.source = Source(data, split=split, name=subset) if isinstance(data, str | Path) else None
        if self.source is not None and split is None and len(self.source.splits) > 1:
            raise ValueError(f"{data} has the splits {self.source.splits}: choose one (--split)")
        self.output = ScoreOutput(output)
        done = self.output.finished("index", keep=lambda row: "error" in row)
        settings = {
            "input": _where(data) if self.source is not None else name,
            "split": split,
            "subset": subset,
            "key": key,
            "columns": dataclasses.asdict(self.columns),
            **dataclasses.asdict(options),
            **model,
            "judgements": judgements,
        }
        for option in ("max_new_tokens", "max_retries"):  # the option, else the model's setting (None: the model's)
            asked = getattr(options, option)
            settings[option] = asked if asked is not None else model.get(option)
        if self.output.path is None:
            self.settings = resolve_settings("-", settings, started=False)
        else:
            restart = f"delete {self.output.jsonl} to start afresh, or write to another output"
            self.settings = resolve_settings(self.output.path, settings, started=bool(done), restart=restart)
        self.options = options.replace(seed=self.settings["seed"])
        if options.seed is None:
            how = "of the run resumed" if done else "drawn"
            logger.info("seed %d (%s; --seed %d repeats this run)", self.options.seed, how, self.options.seed)
        if retry_errors and any(done.values()):
            removed = self.output.drop(lambda row: "error" in row)
            logger.info("%s: %d error rows removed, to be scored again", self.output, removed)
            done = {k: failed for k, failed in done.items() if not failed}
        elif any(done.values()):
            logger.info(
                "%s: %d rows already done, %d of them errors (--retry-errors scores those again)",
                self.output,
                len(done),
                sum(done.values()),
            )
        elif done:
            logger.info("%s: %d rows already done", self.output, len(done))
        self.done: dict[Any, bool] = done
        """Keys of the rows written by an earlier run (True: an error row), skipped by this one."""

    @property
    def total(self) -> int | None:
        """How many rows the input holds, when its source says."""
        return None if self.source is None else self.source.total

    def rows(self) -> Iterator[Row]:
        """The source's rows not written yet, read (a row that cannot be read carries its error)."""
        if self.source is None:
            raise ValueError("this job's rows are read elsewhere (not from a grm source); give them to write()")
        for record in self.source:
            if record.position in self.done:
                continue
            if record.error is None:
                parsed = row_item(record.row, record.where, self.columns)
            else:
                parsed = RowItem(None, None, error=record.error)
            yield record.position, record.where, parsed

    def run(self, rm: Any, meta_rm: Any = None, *, progress: bool | None = None) -> JobStats:
        """Score the rows not written yet with ``rm`` (and ``meta_rm``) in this process, ``chunk_size`` rows per
        ``score_batch`` call, and write them (:meth:`write`)."""
        check_meta_rm(self.options, rated=meta_rm is not None)
        return self.write(self._scored(rm, meta_rm), progress=progress)

    def _scored(self, rm: Any, meta_rm: Any) -> Iterator[dict[str, Any]]:
        pending: list[Row] = []
        for key, where, parsed in self.rows():
            if parsed.item is None:  # written at once: its error needs no model
                yield error_row(key, parsed.id, str(parsed.error))
                continue
            pending.append((key, where, parsed))
            if len(pending) >= self.chunk_size:
                yield from score_rows(rm, pending, self.options, meta_rm=meta_rm, judgements=self.judgements)
                pending = []
        if pending:
            yield from score_rows(rm, pending, self.options, meta_rm=meta_rm, judgements=self.judgements)

    def write(self, rows: Iterable[dict[str, Any]], *, progress: bool | None = None) -> JobStats:
        """Record the settings, then append each output row of ``rows`` (one per input row not written yet) as it
        comes, counting rows scored and failed and logging the first :data:`ERROR_WARNINGS` errors; at the end
        write a parquet output. A fault of the environment, raised while rows are made or written, stops the job
        with :class:`JobStopped` (what was written is kept); a closed standard output ends it early
        (``closed``)."""
        stats = JobStats(skipped=len(self.done), output=str(self.output))
        if self.output.path is not None:
            write_settings(self.output.path, self.settings)
        try:
            with (
                self.output.writer() as writer,
                progress_bar(
                    desc="score", unit="row", total=self.total, initial=len(self.done), progress=progress, leave=True
                ) as bar,
            ):
                for row in rows:
                    try:
                        writer.write(row)
                    except BrokenPipeError:
                        if self.output.path is not None:
                            raise
                        stats.closed = True  # `grm score --output - | head`: the reader has all it wanted
                        logger.info("standard output was closed after %d rows", stats.scored + stats.failed)
                        return stats
                    self._count(row, stats)
                    bar.update(1)
        except Exception as e:
            if not environment_fault(e):
                raise
            raise JobStopped(
                f"stopped by {type(e).__name__}: {e}; {stats.summary()}; the rows written are kept: run the same "
                "command again to resume"
            ) from e
        self.output.finish(self.settings)
        return stats

    def _count(self, row: dict[str, Any], stats: JobStats) -> None:
        if "error" not in row:
            stats.scored += 1
            stats.judgements += row.get("n_drawn", 0)
            return
        stats.failed += 1
        if stats.failed <= ERROR_WARNINGS:
            logger.warning("%s", row["error"])
        elif stats.failed == ERROR_WARNINGS + 1:
            logger.warning("more rows cannot be scored; see their error rows in %s", self.output)
