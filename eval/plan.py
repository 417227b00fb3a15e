"""What an evaluation will do, checked before any data is read, any model is called or any cache is opened."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from grm.eval.base import Benchmark
from grm.eval.benchmarks import get_benchmark
from grm.eval.diagnostics import parse_checks
from grm.eval.scoring import is_grm, scoring_settings
from grm.scoring import ScoringOptions, resolve_options


@dataclass(frozen=True)
class EvalPlan:
    """A checked :func:`grm.eval.evaluate` call: the benchmark, how its items are scored (``options``, whole; its
    seed None until :meth:`seeded`), whether by a GRM (``grm``) and with a meta RM (``rated``), and the metrics'
    and diagnostics' settings."""

    bench: Benchmark
    options: ScoringOptions
    grm: bool
    rated: bool
    chunk_size: int
    draws: int
    n_bootstrap: int
    checks: tuple[str, ...]
    diagnose_sample: int
    skip_bad_rows: bool = False

    @property
    def k(self) -> int:
        return self.options.k

    @property
    def seed(self) -> int:
        """The seed of the items, draws, bootstrap and diagnostics' sample (once :meth:`seeded`)."""
        if self.options.seed is None:
            raise ValueError("the plan has no seed yet; call seeded() first")
        return self.options.seed

    @property
    def adaptive(self) -> bool:
        """Whether items draw their judgements in rounds (``adaptive`` or a ``budget``): up to k each."""
        return self.options.in_rounds

    @property
    def sample_size(self) -> int:
        """How many items the re-scoring diagnostics (position, injection) sample; 0 when none runs."""
        return self.diagnose_sample if set(self.checks) - {"length"} else 0

    def seeded(self, seed: int) -> EvalPlan:
        return dataclasses.replace(self, options=self.options.replace(seed=seed))

    def settings(
        self, data: str | Path, *, split: str | None, name: str | None, model: Mapping[str, Any]
    ) -> dict[str, Any]:
        """What changes the judgements a cache holds, recorded beside it (:mod:`grm.settings`): the data read, the
        ``model``'s settings (:func:`~grm.eval.scoring.scorer_settings`, or the command line's), every scoring
        option (``max_new_tokens`` and ``max_retries``: the option, else the model's) and, with a ``budget``
        (shared by the items of a call), ``chunk_size``."""
        settings = {
            "benchmark": self.bench.name,
            "data": str(Path(data).resolve()) if Path(data).exists() else str(data),
            "split": split,
            "name": name,
            "scorer": "grm" if self.grm else "scalar",
            **scoring_settings(model, self.options),
            "chunk_size": self.chunk_size if self.options.budget is not None else None,
        }
        return settings

    def config(self, data: str | Path, *, split: str | None, name: str | None, limit: int | None) -> dict[str, Any]:
        """What :attr:`EvalResult.config` records: the data read and every setting (diagnostics' when run)."""
        config = {
            "benchmark": self.bench.name,
            "data": str(data),
            "scorer": "grm" if self.grm else "scalar",
            **asdict(self.options),
            "meta_rm": self.rated,
            "draws": self.draws,
            "n_bootstrap": self.n_bootstrap,
            "split": split,
            "name": name,
            "limit": limit,
            "skip_bad_rows": self.skip_bad_rows,
        }
        if self.checks:
            config.update(diagnose=list(self.checks), diagnose_sample=self.diagnose_sample)
        return config


def plan_evaluation(
    benchmark: str | Benchmark,
    scorer: Any,
    options: ScoringOptions | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    rated: bool = False,
    chunk_size: int = 32,
    draws: int = 8,
    n_bootstrap: int = 1000,
    diagnose: str | Sequence[str] | None = (),
    diagnose_sample: int = 100,
    skip_bad_rows: bool | None = None,
) -> EvalPlan:
    """Check an evaluation's settings (see :func:`grm.eval.evaluate`; ``scorer`` None: a GRM not loaded yet),
    raising a ValueError or TypeError naming the first one that cannot work: ``options`` with the keyword
    ``overrides`` applied, a scalar reward function given GRM-only options or ``k`` > 1, a meta RM (``rated``)
    without a GRM, sizes below 1. A benchmark shown in a fixed order turns shuffling off (an explicit
    ``shuffle=True`` is refused). The seed is left as given (None: drawn or read from a cache later).
    ``skip_bad_rows`` None is the benchmark's rule (:attr:`Benchmark.skips_bad_rows`)."""
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    overrides = dict(overrides or {})
    grm = True if scorer is None else is_grm(scorer)
    checks = parse_checks(diagnose)
    options = resolve_options(options, overrides)
    if diagnose_sample < 1 and set(checks) - {"length"}:
        raise ValueError(f"diagnose_sample must be >= 1, got {diagnose_sample}")
    if bench.fixed_order and grm and options.shuffle:
        if overrides.get("shuffle"):
            raise ValueError(f"{bench.name} shows the responses in a fixed order: shuffle must be off")
        options = options.replace(shuffle=False)
    if not grm and options.k != 1:
        raise ValueError(f"k must be >= 1 for a GRM and 1 for a scalar reward function, got {options.k}")
    if rated and not grm:
        raise ValueError("meta_rm needs a GRM scorer: a scalar reward function has no judgements to rate")
    if draws < 1 or chunk_size < 1:
        raise ValueError(f"draws and chunk_size must be >= 1, got {draws} and {chunk_size}")
    grm_only = [f.name for f in dataclasses.fields(options) if f.name not in ("k", "seed")]
    grm_only = [name for name in grm_only if getattr(options, name) != getattr(ScoringOptions, name)]
    if not grm and grm_only:
        raise ValueError(f"options {grm_only} apply to a GRM only")
    skip = bench.skips_bad_rows if skip_bad_rows is None else bool(skip_bad_rows)
    return EvalPlan(bench, options, grm, rated, chunk_size, draws, n_bootstrap, checks, diagnose_sample, skip)
