"""``evaluate``: score a benchmark with a GRM (or any scalar reward function), cache every judgement, and compute
the benchmark's scores, bootstrap intervals and voting@k / MetaRM@k curves (or, with adaptive compute, the scores
of each item's own vote and the judgements it drew)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grm.eval.base import HEADLINE, Benchmark, EvalItem, Table, headline_key
from grm.eval.cache import EvalCache, cache_row
from grm.eval.diagnostics import Diagnosis, ItemSample, run_diagnostics
from grm.eval.metrics import Judged, bootstrap_intervals, mean_summary, own_values, vote_values
from grm.eval.plan import EvalPlan, plan_evaluation
from grm.eval.reading import ItemReader
from grm.eval.scoring import judge, judged_of, scorer_settings
from grm.progress import progress_bar
from grm.scoring import JudgementRater, ScoringOptions
from grm.seeding import random_seed

logger = logging.getLogger(__name__)

UNIT = "fraction"
"""Every score of a result is a fraction in 0..1 (``result.json`` says so); reports show percent."""


@dataclass
class EvalResult:
    """Scores of one benchmark run.

    ``scores[mode]`` holds the benchmark's named scores (``headline``, then its own: ``overall``, ``groups/...``,
    ``subsets/...``) with all ``k`` judgements per item, for mode ``voting`` and, when meta scores were cached,
    ``metarm``; ``intervals[mode][key]`` their bootstrap intervals; ``curves[mode][k]`` the same scores from ``k``
    judgements. Every score is a fraction in 0..1 (accuracy, or ROC-AUC when ``metric`` says so; reports show
    them in percent); NaN where undefined.

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
    warnings: list[str] = field(default_factory=list)
    """Parts of the benchmark the data lacks (see :meth:`Benchmark.coverage`)."""
    n_skipped: int = 0
    """Rows of the data that were not valid items and were skipped (see ``skip_bad_rows``)."""
    skipped: list[str] = field(default_factory=list)
    """The first of them, each ``"<file> line N: why"``."""

    @property
    def mode(self) -> str:
        """The mode the headline comes from: ``metarm`` when it was run, else ``voting``."""
        return "metarm" if "metarm" in self.scores else "voting"

    @property
    def headline_key(self) -> str:
        """Which of the benchmark's scores the headline is: ``overall``, or ``accuracy`` on partial data."""
        return headline_key(self.scores[self.mode])

    @property
    def headline(self) -> float:
        """The benchmark's main number (``scores[mode]["headline"]``, e.g. RewardBench's overall) with all k
        judgements (adaptive: as drawn), a fraction in 0..1."""
        return self.scores[self.mode].get(HEADLINE, math.nan)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None, curve keys become strings; with the headline, the key and mode it comes
        from, and the unit of every score."""
        out = {"headline": self.headline, "headline_key": self.headline_key, "mode": self.mode, "unit": UNIT}
        return _json_safe(out | asdict(self))


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
    skip_bad_rows: bool | None = None,
    model: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> EvalResult:
    """Score ``benchmark`` on ``data`` (a local file or folder, or a hub dataset name) and compute its scores.

    ``scorer`` is a :class:`grm.GRM` or any callable ``(messages, responses) -> list[float]``. ``options`` (a
    :class:`grm.ScoringOptions`, default ``ScoringOptions()``; its fields also by keyword, e.g. ``k=8``) say
    how a GRM scores, and go whole to its ``score_batch`` with ``meta_rm`` (which rates the ``k`` judgements and
    votes the top ``k_meta``). A scalar function takes only ``k=1`` and a ``seed``. A benchmark that shows the
    responses in a fixed order (JudgeBench) turns shuffling off (``shuffle=True`` by keyword is an error). The seed
    also seeds the draws, the bootstrap and the diagnostics' sample; None draws one (a resumed cache's: the one it
    recorded), recorded in ``EvalResult.config``. Items go to the scorer ``chunk_size`` at a time (one
    ``score_batch`` call each; the engine's batch size is the backend's), each item seeded by the seed and its id,
    so that neither ``chunk_size`` nor what the cache held changes it.
    With ``cache``, each item's judgements are appended to that JSONL file as they are made (a GRM's
    ``Reward.to_dict()``), keyed by item id, and a later call with the same cache scores only the items not in it.
    The settings that change the judgements (the data, the model, every scoring option; see
    :meth:`EvalPlan.settings`) are recorded in ``<cache>.settings.json``, and a call whose settings differ from a
    cache's is refused, naming each setting that differs, before anything is scored. ``model`` holds the model's
    settings to record (the command line's: model path, backend, template...); default: what the scorer says of
    itself (:func:`~grm.eval.scoring.scorer_settings`).
    Voting@k and MetaRM@k for every k up to ``k`` are computed from the cached judgements by drawing k of them
    ``draws`` times per item; intervals come from ``n_bootstrap`` resamples of the items (of whole units, see
    :meth:`Benchmark.unit`).

    Options that draw in rounds (``adaptive``, with its ``risk``, or a ``budget``, which is per ``score_batch``
    call: ``chunk_size`` items) make an adaptive run: an item may stop before ``k``, its cache row holds the
    judgements it drew, and it is scored by its own vote (see :class:`EvalResult`).

    ``diagnose`` names bias checks (``"length"``, ``"position"``, ``"injection"``, or a comma-separated string) run
    beside the scores, see :mod:`grm.eval.diagnostics`; position and injection re-score ``diagnose_sample`` items
    drawn at random (seeded), cached next to ``cache`` (``<cache stem>.diagnostics.jsonl``).

    A row of the data that is not a valid item (unreadable, a missing field, a wrong type) is named with its file
    and line. ``skip_bad_rows`` (None: the benchmark's rule, :attr:`Benchmark.skips_bad_rows`: only ``synthetic``
    skips) skips such rows with a warning, counted in ``EvalResult.n_skipped``; else the first stops the run
    before more items are scored, with a :class:`~grm.eval.reading.BadData` error listing every bad row of the
    data.
    """
    plan = plan_evaluation(
        benchmark,
        scorer,
        options,
        overrides,
        rated=meta_rm is not None,
        chunk_size=chunk_size,
        draws=draws,
        n_bootstrap=n_bootstrap,
        diagnose=diagnose,
        diagnose_sample=diagnose_sample,
        skip_bad_rows=skip_bad_rows,
    )
    model = scorer_settings(scorer, meta_rm) if model is None else {"scorer": "grm" if plan.grm else "scalar", **model}
    store = EvalCache(cache, plan.settings(data, split=split, name=name, model=model))
    if plan.options.seed is None:
        how = "of the cache resumed" if store.entries else "drawn"
        logger.info(
            "seed %d (%s; seed=%d repeats this evaluation)", store.settings["seed"], how, store.settings["seed"]
        )
    plan = plan.seeded(store.settings["seed"])
    sample = ItemSample(plan.sample_size, plan.seed)
    judging = Judging(plan, scorer, meta_rm, store)
    reader = ItemReader(plan.bench, data, split=split, name=name, limit=limit, skip=plan.skip_bad_rows)
    with (
        store,
        progress_bar(desc=f"eval {plan.bench.name}", unit="item", total=limit, progress=progress, leave=True) as bar,
    ):
        for item in reader:
            sample.offer(item)
            judging.add(item)
            bar.update(judging.done - bar.n)
        judging.flush()
        bar.update(judging.done - bar.n)
    judged = judging.result(data)
    store.warn_unused()
    config = plan.config(data, split=split, name=name, limit=limit)
    result = score_judged(
        plan.bench,
        judged,
        k=plan.k,
        k_meta=plan.options.k_meta,
        seed=plan.seed,
        draws=plan.draws,
        n_bootstrap=plan.n_bootstrap,
        config=config,
        progress=progress,
        adaptive=plan.adaptive,
    )
    result.n_skipped, result.skipped = reader.n_skipped, [str(row) for row in reader.skipped]
    if plan.checks:
        diagnostics_cache = None if cache is None else Path(cache).with_suffix(".diagnostics.jsonl")
        result.diagnostics = diagnose_judged(
            plan, judged, sample.items, scorer, meta_rm, diagnostics_cache, progress, store.settings
        )
    return result


def check_cache(
    benchmark: str | Benchmark,
    data: str | Path,
    cache: str | Path,
    options: ScoringOptions | None = None,
    *,
    model: Mapping[str, Any],
    rated: bool = False,
    split: str | None = None,
    name: str | None = None,
    chunk_size: int = 32,
    **overrides: Any,
) -> None:
    """Refuse, before a model is loaded, what :func:`evaluate` would refuse when it opens ``cache`` for a GRM with
    these settings (``model``: the model's, as the command line records them; ``rated``: with a meta RM): bad
    options, or a cache made with other settings (:class:`grm.settings.SettingsMismatch`). Nothing is written."""
    plan = plan_evaluation(benchmark, None, options, overrides, rated=rated, chunk_size=chunk_size)
    EvalCache(cache, plan.settings(data, split=split, name=name, model={"scorer": "grm", **model}))


class Judging:
    """Items judged in the order given: each from the cache when it holds it (checked against the plan), else
    queued and scored ``chunk_size`` at a time, each chunk's rows appended to the cache as soon as it is scored."""

    def __init__(self, plan: EvalPlan, scorer: Any, meta_rm: JudgementRater | None, cache: EvalCache) -> None:
        self.plan, self.scorer, self.meta_rm, self.cache = plan, scorer, meta_rm, cache
        self.judged: list[Judged | None] = []
        self.pending: list[tuple[int, EvalItem]] = []
        self.n_cached = 0

    @property
    def done(self) -> int:
        """Items judged so far (from the cache or scored)."""
        return len(self.judged) - len(self.pending)

    def add(self, item: EvalItem) -> None:
        position = len(self.judged)
        self.judged.append(self.cache.take(item))
        if self.judged[position] is not None:
            self.n_cached += 1
        else:
            self.pending.append((position, item))
            if len(self.pending) >= self.plan.chunk_size:
                self.flush()

    def flush(self) -> None:
        """Score the queued items in one call and write their rows."""
        if not self.pending:
            return
        items = [it for _, it in self.pending]
        outcomes = judge(self.scorer, items, self.plan.options, meta_rm=self.meta_rm)
        for (position, item), outcome in zip(self.pending, outcomes):
            self.cache.write(cache_row(item, outcome, self.plan.k, self.plan.adaptive))
            self.judged[position] = judged_of(item, outcome)
        self.pending.clear()

    def result(self, data: str | Path) -> list[Judged]:
        """Every item judged, once all are flushed; a ValueError when ``data`` held none."""
        if self.pending:
            raise RuntimeError("flush() the pending items first")
        if not self.judged:
            raise ValueError(f"{data}: no {self.plan.bench.name} items")
        n = len(self.judged)
        logger.info(
            "%s: %d items, %d from the cache, %d scored now", self.plan.bench.name, n, self.n_cached, n - self.n_cached
        )
        return self.judged  # type: ignore[return-value]


def diagnose_judged(
    plan: EvalPlan,
    judged: Sequence[Judged],
    sample: Sequence[EvalItem],
    scorer: Any,
    meta_rm: JudgementRater | None,
    cache: Path | None,
    progress: bool,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Diagnosis]:
    """The plan's diagnostics of the judged items (``length``) and of the sampled ones re-scored (``position``,
    ``injection``, cached in ``cache``)."""
    return run_diagnostics(
        plan.checks,
        judged,
        sample,
        scorer,
        plan.options,
        meta_rm=meta_rm,
        chunk_size=plan.chunk_size,
        n_bootstrap=plan.n_bootstrap,
        cache=cache,
        progress=progress,
        settings=settings,
    )


def score_judged(
    bench: Benchmark,
    judged: Sequence[Judged],
    *,
    k: int,
    k_meta: int | None = None,
    seed: int | None = None,
    draws: int = 8,
    n_bootstrap: int = 1000,
    config: dict[str, Any] | None = None,
    progress: bool = True,
    adaptive: bool = False,
) -> EvalResult:
    """Scores, intervals and voting@k (and MetaRM@k when every item has meta scores) for judged items; with
    ``adaptive``, the scores and intervals of each item's own vote, in its one mode, and no curves. ``seed`` (None:
    drawn, recorded in the config) seeds the draws and the bootstrap."""
    config = dict(config or {})
    if seed is None:
        seed = config["seed"] = random_seed()
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
    with progress_bar(total=len(modes) * k, desc="voting@k", unit="k", progress=progress and not adaptive) as bar:
        for mode in modes:
            if adaptive:  # an item's own vote (meta-guided when rated): there are no k of its judgements to draw
                mean_table = table(own_values(judged, bench.value, width=bench.width))
                scores[mode] = bench.scores(mean_table)
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
                curves[mode][kk] = mean_summary([bench.scores(table(v)) for v in values])
                bar.update(1)
            mean_table = table(values.mean(axis=0))
            scores[mode] = curves[mode][k]
            intervals[mode] = _intervals(bench, mean_table, units, n_bootstrap, seed)
    n_valid = [sum(j.valid for j in item.judgements) for item in judged]
    warnings = bench.coverage(subsets)
    for warning in warnings:
        logger.warning("%s: %s", bench.name, warning)
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
        config=config,
        adaptive=adaptive,
        compute=_compute(judged),
        warnings=warnings,
    )


def _intervals(
    bench: Benchmark, table: Table, units: np.ndarray, n_bootstrap: int, seed: int
) -> dict[str, tuple[float, float]]:
    return bootstrap_intervals(
        lambda index, copies: bench.scores(table.take(index, copies)),
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


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {str(key): _json_safe(v) for key, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x
