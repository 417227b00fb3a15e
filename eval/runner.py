"""``evaluate``: score a benchmark with a GRM (or any scalar reward function), cache every judgement, and compute
the benchmark's scores, bootstrap intervals and voting@k / MetaRM@k curves."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from grm.eval.base import Benchmark, EvalItem, Table
from grm.eval.benchmarks import get_benchmark
from grm.eval.diagnostics import Diagnosis, ItemSample, parse_checks, run_diagnostics
from grm.eval.metrics import Judged, bootstrap_intervals, mean_summary, vote_values
from grm.eval.scoring import is_grm, judge
from grm.jsonl import JsonlWriter, load_finished
from grm.scoring import JudgementRater, ScoringOptions, resolve_options
from grm.seeding import random_seed
from grm.types import Judgement, Reward

logger = logging.getLogger(__name__)

HEADLINE_KEYS = ("overall", "accuracy")
"""The score a curve and the report lead with: the first of these a summary has."""


@dataclass
class EvalResult:
    """Scores of one benchmark run.

    ``scores[mode]`` holds the benchmark's named scores (``overall``, ``groups/...``, ``subsets/...``) with all
    ``k`` judgements per item, for mode ``voting`` and, when meta scores were cached, ``metarm``;
    ``intervals[mode][key]`` their bootstrap intervals; ``curves[mode][k]`` the same scores from ``k`` judgements.
    Fractions in 0..1 (accuracy, or ROC-AUC when ``metric`` says so); NaN where undefined.
    """

    benchmark: str
    metric: str
    k: int
    n_items: int
    subset_sizes: dict[str, int]
    scores: dict[str, dict[str, float]]
    intervals: dict[str, dict[str, tuple[float, float]]]
    curves: dict[str, dict[int, dict[str, float]]]
    n_judgements: int
    n_invalid: int
    n_unscored: int
    config: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Diagnosis] = field(default_factory=dict)
    """Bias and reward-hacking checks (``length``, ``position``, ``injection``) when asked for."""

    @property
    def mode(self) -> str:
        """The mode the headline comes from: ``metarm`` when it was run, else ``voting``."""
        return "metarm" if "metarm" in self.scores else "voting"

    @property
    def headline_key(self) -> str:
        return next((key for key in HEADLINE_KEYS if key in self.scores[self.mode]), HEADLINE_KEYS[-1])

    @property
    def headline(self) -> float:
        """The benchmark's main number (e.g. RewardBench's overall) with all k judgements."""
        return self.scores[self.mode].get(self.headline_key, math.nan)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None, curve keys become strings."""
        return _json_safe(asdict(self))


def evaluate(
    benchmark: str | Benchmark,
    data: str | Path,
    scorer: Any,
    options: ScoringOptions | None = None,
    *,
    meta_rm: JudgementRater | None = None,
    cache: str | Path | None = None,
    chunk_size: int = 32,
    draws: int = 8,
    n_bootstrap: int = 1000,
    split: str | None = None,
    name: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    diagnose: str | Sequence[str] = (),
    diagnose_sample: int = 100,
    **overrides: Any,
) -> EvalResult:
    """Score ``benchmark`` on ``data`` (a local file or folder, or a hub dataset name) and compute its scores.

    ``scorer`` is a :class:`grm.GRM` or any callable ``(messages, responses) -> list[float]``. ``options`` (a
    :class:`grm.ScoringOptions`, default ``ScoringOptions(seed=0)``; its fields also by keyword, e.g. ``k=8``) say
    how a GRM scores, and go whole to its ``score_batch`` with ``meta_rm`` (which rates the ``k`` judgements and
    votes the top ``k_meta``). A scalar function takes only ``k=1`` and a ``seed``. A benchmark that shows the
    responses in a fixed order (JudgeBench) turns shuffling off (``shuffle=True`` by keyword is an error). The seed
    also seeds the draws, the bootstrap and the diagnostics' sample; None draws one, recorded in
    ``EvalResult.config``. Items go to the scorer ``chunk_size`` at a time (one ``score_batch`` call each; the
    engine's batch size is the backend's), each item seeded by the seed and its id, so that neither
    ``chunk_size`` nor what the cache held changes it.
    With ``cache``, each item's judgements are appended to that JSONL file as they are made (a GRM's
    ``Reward.to_dict()``), keyed by item id, and a later call with the same cache scores only the items not in it.
    Voting@k and MetaRM@k for every k up to ``k`` are computed from the cached judgements by drawing k of them
    ``draws`` times per item; intervals come from ``n_bootstrap`` resamples of the items (of whole units, see
    :meth:`Benchmark.unit`).

    ``diagnose`` names bias checks (``"length"``, ``"position"``, ``"injection"``, or a comma-separated string) run
    beside the scores, see :mod:`grm.eval.diagnostics`; position and injection re-score ``diagnose_sample`` items
    drawn at random (seeded), cached next to ``cache`` (``<cache stem>.diagnostics.jsonl``).
    """
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    grm_scorer = is_grm(scorer)
    checks = parse_checks(diagnose)
    options = resolve_options(options, overrides, default=ScoringOptions(seed=0))
    if options.seed is None:
        options = options.replace(seed=random_seed())
    if diagnose_sample < 1 and set(checks) - {"length"}:
        raise ValueError(f"diagnose_sample must be >= 1, got {diagnose_sample}")
    if bench.fixed_order and grm_scorer and options.shuffle:
        if overrides.get("shuffle"):
            raise ValueError(f"{bench.name} shows the responses in a fixed order: shuffle must be off")
        options = options.replace(shuffle=False)
    k, seed = options.k, options.seed
    if not grm_scorer and k != 1:
        raise ValueError(f"k must be >= 1 for a GRM and 1 for a scalar reward function, got {k}")
    if meta_rm is not None and not grm_scorer:
        raise ValueError("meta_rm needs a GRM scorer: a scalar reward function has no judgements to rate")
    if draws < 1 or chunk_size < 1:
        raise ValueError(f"draws and chunk_size must be >= 1, got {draws} and {chunk_size}")
    grm_only = [f.name for f in dataclasses.fields(options) if f.name not in ("k", "seed")]
    grm_only = [name for name in grm_only if getattr(options, name) != getattr(ScoringOptions, name)]
    if not grm_scorer and grm_only:
        raise ValueError(f"options {grm_only} apply to a GRM only")

    cached = _load_cache(cache) if cache is not None else {}
    judged: list[Judged | None] = []
    pending: list[tuple[int, EvalItem]] = []
    seen: set[str] = set()
    writer = JsonlWriter(cache) if cache is not None else None
    n_cached = 0
    sample = ItemSample(diagnose_sample if set(checks) - {"length"} else 0, seed)

    def flush() -> None:
        if not pending:
            return
        outcomes = judge(scorer, [it for _, it in pending], options, meta_rm=meta_rm)
        for (position, it), outcome in zip(pending, outcomes):
            row, item_judged = _row(it, outcome), _judged(it, outcome)
            if writer is not None:
                writer.write(row)
            judged[position] = item_judged
        bar.update(len(pending))
        pending.clear()

    try:
        with tqdm(desc=f"eval {bench.name}", unit="item", total=limit, disable=not progress) as bar:
            for position, item in enumerate(bench.items(data, split=split, name=name)):
                if limit is not None and position >= limit:
                    break
                if item.id in seen:
                    raise ValueError(f"duplicate item id {item.id!r} in {data}; ids key the cache and must be unique")
                seen.add(item.id)
                sample.offer(item)
                judged.append(None)
                if item.id in cached:
                    judged[position] = _judged_from_cache(cached.pop(item.id), item, k, grm_scorer, meta_rm, cache)
                    n_cached += 1
                    bar.update(1)
                else:
                    pending.append((position, item))
                    if len(pending) >= chunk_size:
                        flush()
            flush()
    finally:
        if writer is not None:
            writer.close()
    if not judged:
        raise ValueError(f"{data}: no {bench.name} items")
    if cached:
        logger.warning("%s: %d cached items are not in this data and were ignored", cache, len(cached))
    logger.info(
        "%s: %d items, %d from the cache, %d scored now", bench.name, len(judged), n_cached, len(judged) - n_cached
    )
    config = {
        "benchmark": bench.name,
        "data": str(data),
        "scorer": "grm" if grm_scorer else "scalar",
        **asdict(options),
        "meta_rm": meta_rm is not None,
        "draws": draws,
        "n_bootstrap": n_bootstrap,
        "split": split,
        "name": name,
        "limit": limit,
    }
    result = score_judged(
        bench,
        judged,  # type: ignore[arg-type]
        k=k,
        k_meta=options.k_meta,
        seed=seed,
        draws=draws,
        n_bootstrap=n_bootstrap,
        config=config,
        progress=progress,
    )
    if checks:
        config.update(diagnose=list(checks), diagnose_sample=diagnose_sample)
        result.diagnostics = run_diagnostics(
            checks,
            judged,  # type: ignore[arg-type]
            sample.items,
            scorer,
            options,
            meta_rm=meta_rm,
            chunk_size=chunk_size,
            n_bootstrap=n_bootstrap,
            cache=None if cache is None else Path(cache).with_suffix(".diagnostics.jsonl"),
            progress=progress,
        )
    return result


def score_judged(
    bench: Benchmark,
    judged: Sequence[Judged],
    *,
    k: int,
    k_meta: int | None = None,
    seed: int = 0,
    draws: int = 8,
    n_bootstrap: int = 1000,
    config: dict[str, Any] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Scores, intervals and voting@k (and MetaRM@k when every item has meta scores) for judged items."""
    subsets = list(dict.fromkeys(j.subset for j in judged))
    code = {s: c for c, s in enumerate(subsets)}
    codes = np.array([code[j.subset] for j in judged])
    labels = np.array([bench.label(j.truth) for j in judged])
    ids = np.array([j.id for j in judged], dtype=object)
    unit_code: dict[str, int] = {}
    units = np.array([unit_code.setdefault(bench.unit(j.id), len(unit_code)) for j in judged])

    def table(values: np.ndarray) -> Table:
        return Table(subsets, codes, values, labels, ids, units)

    modes = ["voting"] + (["metarm"] if all(j.meta is not None for j in judged) else [])
    scores: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    curves: dict[str, dict[int, dict[str, float]]] = {}
    with tqdm(total=len(modes) * k, desc="voting@k", unit="k", disable=not progress) as bar:
        for mode in modes:
            curves[mode] = {}
            for kk in range(1, k + 1):
                scaled = None if k_meta is None else max(1, round(kk * k_meta / k))
                values = vote_values(
                    judged,
                    bench.value,
                    kk,
                    draws=draws,
                    seed=seed,
                    meta=mode == "metarm",
                    k_meta=scaled,
                    width=bench.width,
                )
                curves[mode][kk] = mean_summary([bench.summarize(table(v)) for v in values])
                bar.update(1)
            mean_table = table(values.mean(axis=0))
            scores[mode] = curves[mode][k]
            intervals[mode] = bootstrap_intervals(
                lambda index, copies, t=mean_table: bench.summarize(t.take(index, copies)),
                mean_table.groups(),
                units=units,
                n=n_bootstrap,
                seed=seed,
            )
    n_valid = [sum(j.valid for j in item.judgements) for item in judged]
    return EvalResult(
        benchmark=bench.name,
        metric=bench.metric,
        k=k,
        n_items=len(judged),
        subset_sizes={s: int((codes == c).sum()) for c, s in enumerate(subsets)},
        scores=scores,
        intervals=intervals,
        curves=curves,
        n_judgements=sum(len(item.judgements) for item in judged),
        n_invalid=sum(len(item.judgements) - v for item, v in zip(judged, n_valid)),
        n_unscored=sum(v == 0 for v in n_valid),
        config=config or {},
    )


def _row(item: EvalItem, outcome: Reward | list[float]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": item.id, "subset": item.subset}
    if isinstance(outcome, Reward):
        row.update(k=len(outcome.judgements), reward=outcome.to_dict())
    else:
        row["scores"] = outcome
    return row


def _light(judgements: Sequence[Judgement]) -> list[Judgement]:
    """Judgements without their text: what voting needs, small enough to keep one per sample in memory."""
    return [Judgement(text="", scores=j.scores, error=j.error) for j in judgements]


def _judged(item: EvalItem, outcome: Reward | list[float]) -> Judged:
    if isinstance(outcome, Reward):
        return _item_judged(item, _light(outcome.judgements), outcome.meta_scores)
    return _item_judged(item, [Judgement(text="", scores=outcome)])  # type: ignore[arg-type]


def _item_judged(item: EvalItem, judgements: list[Judgement], meta: list[float] | None = None) -> Judged:
    lengths = [len(r) for r in item.responses]
    return Judged(item.subset, list(item.truth), judgements, meta, id=item.id, lengths=lengths)


def _load_cache(path: str | Path) -> dict[str, dict[str, Any]]:
    """Cached items by id, each cut down as it is read to what the metrics need (judgement texts are dropped)."""
    compact = load_finished(path, "id", keep=lambda row: _compact(row, path))
    if compact:
        logger.info("%s: %d items already judged", path, len(compact))
    return compact


def _compact(row: dict[str, Any], path: str | Path) -> dict[str, Any]:
    if "reward" in row:
        reward = row["reward"]
        judgements = [Judgement(text="", scores=j["scores"], error=j["error"]) for j in reward["judgements"]]
        return {"k": row["k"], "judgements": judgements, "meta": reward.get("meta_scores")}
    if "scores" in row:
        return {"k": None, "judgements": [Judgement(text="", scores=row["scores"])], "meta": None}
    raise ValueError(f"{path}: the row for id {row['id']!r} has neither 'reward' nor 'scores'; not a grm eval cache")


def _judged_from_cache(
    entry: dict[str, Any], item: EvalItem, k: int, grm_scorer: bool, meta_rm: Any, cache: str | Path | None
) -> Judged:
    hint = "pass another cache (or --output) to start afresh"
    if (entry["k"] is not None) != grm_scorer:
        made = "a GRM" if entry["k"] is not None else "a scalar reward function"
        raise ValueError(f"{cache}: item {item.id!r} was judged by {made}, not by this scorer; {hint}")
    if grm_scorer and entry["k"] != k:
        raise ValueError(f"{cache}: item {item.id!r} has k={entry['k']} cached judgements, expected k={k}; {hint}")
    if meta_rm is not None and entry["meta"] is None:
        raise ValueError(f"{cache}: item {item.id!r} was judged without a meta RM; {hint}")
    n = len(item.responses)
    if any(j.scores is not None and len(j.scores) != n for j in entry["judgements"]):
        raise ValueError(f"{cache}: item {item.id!r} has cached scores for other than its {n} responses; {hint}")
    return _item_judged(item, entry["judgements"], entry["meta"])


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {str(key): _json_safe(v) for key, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x
