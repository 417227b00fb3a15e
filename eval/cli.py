"""``grm eval``: score a benchmark with a GRM and write a report (resumable: judgements are cached)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from grm.eval.benchmarks import BENCHMARKS
from grm.eval.diagnostics import CHECKS, parse_checks
from grm.flags import (
    POSITIVE,
    add_chunk_flag,
    add_meta_flags,
    add_model_flags,
    add_ray_flags,
    add_scoring_flags,
    check_model_flags,
    integer,
    model_settings,
    open_scorer,
    scoring_options,
)
from grm.jobs import check_chunks

logger = logging.getLogger("grm")

CACHE_FILE = "judgements.jsonl"
DIAGNOSTICS_FILE = Path(CACHE_FILE).with_suffix(".diagnostics.jsonl").name


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command to the ``grm`` parser."""
    p = sub.add_parser(
        "eval",
        help="evaluate a GRM on a reward-model benchmark",
        description="Score a benchmark (local JSON/JSONL/parquet file or folder, or a hub dataset name) with a "
        f"GRM, cache every judgement in OUTPUT/{CACHE_FILE} (re-running resumes), and write result.json, report.md "
        "and curves.png (voting@k for every k up to K, from the K cached judgements). With --adaptive or --budget "
        "each item draws up to K judgements and is scored by its own vote; the report gives the judgements drawn "
        "and no curves.",
    )
    add_model_flags(p)
    p.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS), help="which benchmark and scoring rule")
    p.add_argument(
        "--data",
        default=None,
        help="local file or folder, or hub dataset name (default: the benchmark's hub dataset; RMB: a clone's path)",
    )
    p.add_argument("--output", required=True, type=Path, help="folder for the cache and the report")
    add_scoring_flags(p, k_help="judgements sampled per item")
    add_meta_flags(p)
    add_ray_flags(p)
    p.add_argument("--split", default=None, help="dataset split (default: the benchmark's)")
    p.add_argument("--name", default=None, help="dataset configuration name (hub datasets)")
    p.add_argument("--limit", type=POSITIVE, default=None, help="score only the first N items")
    add_chunk_flag(p, 32, "items")
    p.add_argument("--draws", type=POSITIVE, default=8, help="random draws per k for voting@k and tie-breaks")
    p.add_argument("--bootstrap", type=POSITIVE, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument(
        "--diagnose",
        default=None,
        metavar="CHECKS",
        help=f"bias checks reported beside the scores, comma-separated: {','.join(CHECKS)} (position and injection "
        f"re-score a sample of items; cached in OUTPUT/{DIAGNOSTICS_FILE})",
    )
    p.add_argument(
        "--diagnose-sample", type=integer(), default=100, metavar="N", help="items re-scored by position and injection"
    )
    p.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip rows that are not valid items (counted and named in the report) instead of stopping; the "
        "default follows the benchmark's rule (only synthetic skips)",
    )
    p.set_defaults(func=_eval_command)


def _eval_command(args: argparse.Namespace) -> int:
    from grm.eval.benchmarks import get_benchmark
    from grm.eval.report import write_report
    from grm.eval.runner import check_cache, evaluate

    bench = get_benchmark(args.benchmark)
    checks = parse_checks(args.diagnose)
    if set(checks) - {"length"} and args.diagnose_sample < 1:
        raise ValueError(f"--diagnose-sample must be >= 1, got {args.diagnose_sample}")
    data = args.data or bench.hub_id
    if data is None:
        raise ValueError(f"--data is required for {bench.name}: it has no default hub dataset")
    # check the options and read the first item before loading any model, so that bad input fails fast
    options = scoring_options(args)
    check_chunks(options, args.chunk_size)
    check_model_flags(args)
    if args.ray:
        import grm.distributed  # noqa: F401  (without the ray extra, nothing is loaded)
    next(iter(bench.read(data, split=args.split, name=args.name)), None)  # the data opens (a bad row is evaluate's)
    model = model_settings(args)  # recorded beside the cache: a resume with another model is refused, unloaded
    cache = args.output / CACHE_FILE
    check_cache(
        bench,
        data,
        cache,
        options,
        model=model,
        rated=args.meta_rm is not None,
        split=args.split,
        name=args.name,
        chunk_size=args.chunk_size,
    )
    with open_scorer(args) as (scorer, meta_rm):  # with --ray: replicas on a Ray cluster
        result = evaluate(
            bench,
            data,
            scorer,
            options,
            meta_rm=meta_rm,
            cache=cache,
            model=model,
            chunk_size=args.chunk_size,
            draws=args.draws,
            n_bootstrap=args.bootstrap,
            split=args.split,
            name=args.name,
            limit=args.limit,
            diagnose=checks,
            diagnose_sample=args.diagnose_sample,
            skip_bad_rows=True if args.skip_bad_rows else None,
        )
    paths = write_report(result, args.output)
    drawn = f", {result.compute['judgements_per_item']:.2f} judgements per item" if result.adaptive else ""
    skipped = f", {result.n_skipped} bad rows skipped" if result.n_skipped else ""
    logger.info(
        "%s %s: %.1f%% (%s@%d%s, %d items%s%s); report in %s",
        result.benchmark,
        result.headline_key,
        100 * result.headline,
        result.mode,
        result.k,
        " adaptive" if result.adaptive else "",
        result.n_items,
        drawn,
        skipped,
        paths["markdown"],
    )
    for check, d in result.diagnostics.items():
        key = {"length": "length_bias", "position": "flip_rate", "injection": "flip_rate"}[check]
        logger.info("%s diagnostic: %s %.1f%% (%d items)", check, key, 100 * d.scores[key], d.counts["items"])
    return 0
