"""``evaluate``: score a benchmark with a GRM (or any scalar reward function), cache every judgement, and compute
the benchmark's scores, bootstrap intervals and voting@k / MetaRM@k curves (or, with adaptive compute, the scores
of each item's own vote and the judgements it drew)."""

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
from grm.eval.metrics import Judged, bootstrap_intervals, mean_summary, own_values, vote_values
from grm.eval.scoring import is_grm, judge
from grm.jsonl import JsonlWriter, load_finished
from grm.scoring import JudgementRater, ScoringOptions, resolve_options
from grm.seeding import random_seed
from grm.types import Judgement, Reward
from grm.voting import Vote

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

    An ``adaptive`` run (adaptive compute or a budget: up to ``k`` judgements per item) scores each item by its
    own vote over the judgements it drew, in one mode (``metarm`` with a meta RM, whose vote it is, else
    ``voting``), and has no curves (voting k of an item's judgements needs k of them). ``compute`` says what a
    GRM's judgements cost: ``judgements_drawn`` (resamples included) and ``judgements_per_item``, and where the
    backend recorded them ``tokens`` and ``tokens_per_item`` (of the judgements kept, over the items with a count).
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
    adaptive: bool = False
    compute: dict[str, float] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """The mode the headline comes from: ``metarm`` when it was run, else ``voting``."""
        return "metarm" if "metarm" in self.scores else "voting"

    @property
    def headline_key(self) -> str:
        return next((key for key in HEADLINE_KEYS if key in self.scores[self.mode]), HEADLINE_KEYS[-1])

    @property
    def headline(self) -> float:
        """The benchmark's main number (e.g. RewardBench's overall) with all k judgements (adaptive: as drawn)."""
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

    Options that draw in rounds (``adaptive``, with its ``risk``, or a ``budget``, which is per ``score_batch``
    call: ``chunk_size`` items) make an adaptive run: an item may stop before ``k``, its cache row holds the
    judgements it drew, and it is scored by its own vote (see :class:`EvalResult`); its cache resumes adaptive
    runs only, with the same ``k``, and a fixed-k run refuses it.

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
    adaptive = options.in_rounds

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
            row, item_judged = _row(it, outcome, k, adaptive), _judged(it, outcome)
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
                    entry = cached.pop(item.id)
                    judged[position] = _judged_from_cache(entry, item, k, grm_scorer, meta_rm, cache, adaptive)
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
        adaptive=adaptive,
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
    adaptive: bool = False,
) -> EvalResult:
    """Scores, intervals and voting@k (and MetaRM@k when every item has meta scores) for judged items; with
    ``adaptive``, the scores and intervals of each item's own vote, in its one mode, and no curves."""
    subsets = list(dict.fromkeys(j.subset for j in judged))
    code = {s: c for c, s in enumerate(subsets)}
    codes = np.array([code[j.subset] for j in judged])
    labels = np.array([bench.label(j.truth) for j in judged])
    ids = np.array([j.id for j in judged], dtype=object)
    unit_code: dict[str, int] = {}
    units = np.array([unit_code.setdefault(bench.unit(j.id), len(unit_code)) for j in judged])

    def table(values: np.ndarray) -> Table:
        return Table(subsets, codes, values, labels, ids, units)

    rated = all(j.meta is not None for j in judged)
    modes = (["metarm"] if rated else ["voting"]) if adaptive else ["voting"] + (["metarm"] if rated else [])
    scores: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    curves: dict[str, dict[int, dict[str, float]]] = {}
    with tqdm(total=len(modes) * k, desc="voting@k", unit="k", disable=not progress or adaptive) as bar:
        for mode in modes:
            if adaptive:  # an item's own vote (meta-guided when rated): there are no k of its judgements to draw
                mean_table = table(own_values(judged, bench.value, width=bench.width))
                scores[mode] = bench.summarize(mean_table)
                intervals[mode] = _intervals(bench, mean_table, units, n_bootstrap, seed)
                continue
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
            intervals[mode] = _intervals(bench, mean_table, units, n_bootstrap, seed)
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
        adaptive=adaptive,
        compute=_compute(judged),
    )


def _intervals(
    bench: Benchmark, table: Table, units: np.ndarray, n_bootstrap: int, seed: int
) -> dict[str, tuple[float, float]]:
    return bootstrap_intervals(
        lambda index, copies: bench.summarize(table.take(index, copies)),
        table.groups(),
        units=units,
        n=n_bootstrap,
        seed=seed,
    )


def _compute(judged: Sequence[Judged]) -> dict[str, float]:
    """What a GRM's judgements cost (see :class:`EvalResult`); empty for a scalar reward function."""
    drawn = [j.n_drawn for j in judged]
    if not drawn or any(d is None for d in drawn):
        return {}
    total = sum(drawn)  # type: ignore[arg-type]
    out: dict[str, float] = {"judgements_drawn": total, "judgements_per_item": total / len(drawn)}
    tokens = [j.n_tokens for j in judged if j.n_tokens is not None]
    if tokens:
        out.update(tokens=sum(tokens), tokens_per_item=sum(tokens) / len(tokens))
    return out


def _row(item: EvalItem, outcome: Reward | list[float], k: int, adaptive: bool) -> dict[str, Any]:
    """An item's cache row: ``k`` is the k asked for (a fixed-k row holds that many judgements, an ``adaptive``
    row up to that many)."""
    row: dict[str, Any] = {"id": item.id, "subset": item.subset}
    if isinstance(outcome, Reward):
        row.update(k=k, reward=outcome.to_dict())
        if adaptive:
            row["adaptive"] = True
    else:
        row["scores"] = outcome
    return row


def _light(judgements: Sequence[Judgement]) -> list[Judgement]:
    """Judgements without their text: what voting needs, small enough to keep one per sample in memory."""
    return [Judgement(text="", scores=j.scores, error=j.error) for j in judgements]


def _judged(item: EvalItem, outcome: Reward | list[float]) -> Judged:
    if isinstance(outcome, Reward):
        own = Vote(outcome.rewards, outcome.mean, outcome.best, outcome.kept)
        tokens = _tokens(j.n_tokens for j in outcome.judgements)
        judged = _item_judged(item, _light(outcome.judgements), outcome.meta_scores)
        judged.vote, judged.n_drawn, judged.n_tokens = own, outcome.n_drawn, tokens
        return judged
    return _item_judged(item, [Judgement(text="", scores=outcome)])  # type: ignore[arg-type]


def _tokens(counts: Any) -> int | None:
    """The sum of the recorded token counts (None ones skipped); None when none was recorded."""
    recorded = [n for n in counts if n is not None]
    return sum(recorded) if recorded else None


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
        return {
            "k": row["k"],
            "adaptive": bool(row.get("adaptive")),
            "judgements": judgements,
            "meta": reward.get("meta_scores"),
            "vote": Vote(reward["rewards"], reward["mean"], reward["best"], reward["kept"]),
            "n_drawn": len(judgements) + reward.get("n_retries", 0),
            "n_tokens": _tokens(j.get("n_tokens") for j in reward["judgements"]),
        }
    if "scores" in row:
        return {"k": None, "judgements": [Judgement(text="", scores=row["scores"])], "meta": None}
    raise ValueError(f"{path}: the row for id {row['id']!r} has neither 'reward' nor 'scores'; not a grm eval cache")


def _judged_from_cache(
    entry: dict[str, Any],
    item: EvalItem,
    k: int,
    grm_scorer: bool,
    meta_rm: Any,
    cache: str | Path | None,
    adaptive: bool = False,
) -> Judged:
    hint = "pass another cache (or --output) to start afresh"
    where = f"{cache}: item {item.id!r}"
    if (entry["k"] is not None) != grm_scorer:
        made = "a GRM" if entry["k"] is not None else "a scalar reward function"
        raise ValueError(f"{where} was judged by {made}, not by this scorer; {hint}")
    if grm_scorer:
        _check_cached_grm(entry, k, meta_rm, adaptive, where, hint)
    n = len(item.responses)
    if any(j.scores is not None and len(j.scores) != n for j in entry["judgements"]):
        raise ValueError(f"{where} has cached scores for other than its {n} responses; {hint}")
    judged = _item_judged(item, entry["judgements"], entry["meta"])
    if grm_scorer:
        judged.vote, judged.n_drawn, judged.n_tokens = entry["vote"], entry["n_drawn"], entry["n_tokens"]
    return judged


def _check_cached_grm(entry: dict[str, Any], k: int, meta_rm: Any, adaptive: bool, where: str, hint: str) -> None:
    """ValueError when a GRM's cache row was not made as this run makes them: fixed k or adaptive, the same k,
    with a meta RM or without (an adaptive row's vote is the meta RM's when it had one)."""
    if entry["adaptive"] != adaptive:
        made, this = ("adaptively", "a fixed-k run") if entry["adaptive"] else (f"with all k={entry['k']}", "adaptive")
        raise ValueError(f"{where} was judged {made}, and this run is {this}; {hint}")
    if not adaptive and entry["k"] != k:
        raise ValueError(f"{where} has k={entry['k']} cached judgements, expected k={k}; {hint}")
    if adaptive and (entry["k"] != k or not 1 <= len(entry["judgements"]) <= k):
        got = len(entry["judgements"])
        raise ValueError(f"{where} was judged adaptively with k={entry['k']} ({got} judgements), not k={k}; {hint}")
    if meta_rm is not None and entry["meta"] is None:
        raise ValueError(f"{where} was judged without a meta RM; {hint}")
    if adaptive and meta_rm is None and entry["meta"] is not None:
        raise ValueError(f"{where} was judged with a meta RM, which made its vote; this run has none; {hint}")


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {str(key): _json_safe(v) for key, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x
