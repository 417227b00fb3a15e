"""The ``grm`` command line. Each command registers itself with :func:`register` below."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable

from grm.backends import BackendUnavailableError
from grm.extras import missing_extra
from grm.flags import (
    COUNT,
    POSITIVE,
    add_chunk_flag,
    add_meta_flags,
    add_model_flags,
    add_ray_flags,
    add_scoring_flags,
    check_model_flags,
    integer,
    load_grm,
    load_meta_rm,
    model_settings,
    number,
    open_scorer,
    ray_replica,
    real,
    scoring_options,
)
from grm.jobs import JobStopped, ScoreJob
from grm.progress import setup_console
from grm.rows import Columns
from grm.scoring import check_meta_rm

logger = logging.getLogger("grm")


TERMINAL_HELP = (
    "Logs go to standard error. A progress bar appears only on a terminal and for work that lasts over 2 s: "
    "GRM_PROGRESS=0 turns bars off, GRM_PROGRESS=1 shows them anywhere (as plain lines off a terminal)."
)


def _score_command(args: argparse.Namespace) -> int:
    # every flag, the input, the output and its settings are checked before a model is loaded
    options = scoring_options(args)
    check_model_flags(args)
    columns = Columns.parse(args.query_column, args.responses_column, args.response_columns)
    shared = {
        "columns": columns,
        "split": args.split,
        "subset": args.subset,
        "judgements": not args.no_judgements,
        "retry_errors": args.retry_errors,
    }
    if args.ray:
        from grm.distributed import score_on_ray

        stats = score_on_ray(
            args.input,
            args.output,
            ray_replica(args),
            options,
            replicas=args.replicas,
            batch_size=args.chunk_size,
            address=args.address,
            verbose=args.verbose,
            **shared,
        )
        where = f" on Ray ({args.replicas} replicas)"
    else:
        job = ScoreJob(
            args.input, args.output, options, model=model_settings(args), chunk_size=args.chunk_size, **shared
        )
        with open_scorer(args) as (rm, meta_rm):
            stats = job.run(rm, meta_rm)
        where = ""
    if stats.closed:
        _quiet_stdout()
        return 0
    logger.info("grm score%s: %s", where, stats.summary())
    return 1 if stats.failed else 0


def _quiet_stdout() -> None:
    """After the reader of standard output went away (``grm score --output - | head``): send what is left to
    /dev/null, so that Python's flush at exit is quiet."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _register_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score rows (JSONL, JSON, parquet, CSV, a folder or a hub dataset) with a GRM",
        description="Score each input row. A row is read in the first shape it fits: {query, responses} (query: a "
        "string or chat messages; responses: a list of strings), a preference pair {prompt, chosen, rejected} "
        "(strings or chat messages; the output says which won and by what margin), or one response {prompt or "
        "query, response or completion}; the column flags name other columns. Optional columns: id, principles, "
        "reference. Output rows hold index, id, rewards, best, mean, n_valid, n_drawn and the judgements (docs/cli.md "
        "explains each field); a row that cannot be read or scored gets an error naming it. Re-running with the "
        "same output and settings skips the rows already written; other settings are refused.",
        epilog=TERMINAL_HELP,
    )
    add_model_flags(p)
    add_meta_flags(p)
    p.add_argument(
        "--input",
        required=True,
        help="a .jsonl, .json, .parquet or .csv file, a folder of them or written by save_to_disk, or a hub dataset "
        "name (owner/name); streamed, so any size fits in memory",
    )
    p.add_argument("--split", default=None, help="split of a hub dataset or folder (needed when it has several)")
    p.add_argument("--subset", "--name", dest="subset", default=None, help="configuration (subset) of a hub dataset")
    p.add_argument("--query-column", default=None, help="column holding the query (default: query, else prompt)")
    p.add_argument("--responses-column", default=None, help="column holding a list of responses")
    p.add_argument(
        "--response-columns", default=None, metavar="A,B,...", help="columns holding one response each, judged together"
    )
    p.add_argument(
        "--output",
        required=True,
        help="output JSONL (appended to; re-running with the same settings resumes; the settings are recorded in "
        "OUTPUT.settings.json), a .parquet file (written at the end from OUTPUT.cache.jsonl, which resumes), or - for "
        "standard output (progress and logs go to standard error)",
    )
    p.add_argument("--no-judgements", action="store_true", help="leave the judgements' text out of the output rows")
    p.add_argument(
        "--retry-errors", action="store_true", help="score again the rows that got an error row in an earlier run"
    )
    add_scoring_flags(p)
    add_chunk_flag(p, 64)
    add_ray_flags(p)
    p.set_defaults(func=_score_command)


def _register_train(sub: argparse._SubParsersAction) -> None:
    from grm.training.cli import register

    register(sub)


def _register_eval(sub: argparse._SubParsersAction) -> None:
    from grm.eval.cli import register

    register(sub)


def _serve_command(args: argparse.Namespace) -> int:
    from grm.server import ServerConfig, serve  # first: without the serve extra, nothing is loaded
    from grm.server.validation import request_defaults

    options = scoring_options(args)  # the defaults of a request that names none
    check_model_flags(args)
    config = ServerConfig(
        max_batch_items=args.max_batch_items,
        batch_window_s=args.batch_window_ms / 1000,
        max_responses=args.max_responses,
        max_k=args.max_k,
        max_body_bytes=args.max_body_bytes,
        body_timeout_s=args.body_timeout,
        max_reward_items=args.max_reward_items,
        max_in_flight=args.max_in_flight,
        api_key=args.api_key or os.environ.get("GRM_API_KEY") or None,
        default_k=options.k,
        default_options=request_defaults(options),
        seed=args.seed,
        group_size=args.group_size,
        group_wait_s=args.group_wait_ms / 1000,
        n_max=args.n_max,
        cache_size=args.cache_size,
        cache_ttl_s=args.cache_ttl,
        policy_tokenizer=args.policy_tokenizer,
        length_penalty=args.length_penalty,
        failed_reward=args.failed_reward,
        max_work_tokens=args.max_work_tokens,
        max_batch_judgements=args.max_batch_judgements,
        worker_threads=args.worker_threads,
    )
    if options.k > config.max_k:
        raise ValueError(f"-k {options.k} is above --max-k {config.max_k}")
    check_meta_rm(options, rated=args.meta_rm is not None)  # e.g. --k-meta without --meta-rm
    config.check_judge(_served_judge(args))  # before loading: a pairwise judge's --n-max (its warning: at start)
    # the engine's and the meta RM's bars stay off: a server's terminal shows its log, not one bar per batch
    quiet = {} if any(a.startswith("progress=") for a in args.backend_arg) else {"progress": False}
    serve(load_grm(args, **quiet), host=args.host, port=args.port, config=config, meta_rm=load_meta_rm(args, **quiet))
    return 0


def _served_judge(args: argparse.Namespace):
    """The judge format ``grm serve`` will load, known without loading: ``--judge``, else the model folder's
    ``grm_config.json`` (a hub id's only if cached), else ``spct``. The server checks the loaded one again."""
    from grm.assets import default_grm_path, read_grm_config
    from grm.judges import get_judge

    return get_judge(args.judge or read_grm_config(args.model or default_grm_path()).get("judge") or "spct")


def _register_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a GRM over HTTP (POST /score, OpenRLHF POST /get_reward, slime POST /reward, GET /health)",
        description="Serve a GRM over HTTP with dynamic batching of concurrent requests. The API key may also "
        "come from the GRM_API_KEY environment variable. -k, --max-new-tokens and --max-retries are what a request "
        "that names none gets.",
    )
    add_model_flags(p)
    add_meta_flags(p)
    add_scoring_flags(p, sampling=False, rounds=False, k_help="judgements per request when the request names no k")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=integer(0, 65535), default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: $GRM_API_KEY)")
    p.add_argument("--max-batch-items", type=POSITIVE, default=64, help="items scored together at most")
    p.add_argument("--batch-window-ms", type=number(0), default=10.0, help="how long a batch waits for company")
    p.add_argument("--max-responses", type=POSITIVE, default=32, help="responses per request at most")
    p.add_argument("--max-k", type=POSITIVE, default=64, help="largest k a request may ask for")
    p.add_argument("--max-body-bytes", type=POSITIVE, default=4_000_000, help="larger bodies get 413")
    p.add_argument(
        "--body-timeout", type=number(0, above=True), default=30.0, help="seconds to send a body; slower gets 408"
    )
    p.add_argument("--max-reward-items", type=POSITIVE, default=1024, help="items per /get_reward request at most")
    p.add_argument(
        "--max-in-flight",
        type=POSITIVE,
        default=512,
        help="requests being scored at once (bodies received); more get 503",
    )
    p.add_argument("--max-batch-judgements", type=POSITIVE, default=1024, help="judgements per engine call at most")
    p.add_argument(
        "--max-work-tokens", type=POSITIVE, default=2**26, help="tokens the requests in flight may generate at most"
    )
    p.add_argument("--worker-threads", type=POSITIVE, default=2, help="threads that read and check request bodies")
    rl = p.add_argument_group("RL protocols (/get_reward, /reward: docs/rl.md)")
    rl.add_argument("--seed", type=integer(), default=None, help="seed of RL requests that send none (default: drawn)")
    rl.add_argument(
        "--group-size", type=COUNT, default=0, help="hold per-sample calls until a prompt's N samples are in (0: off)"
    )
    rl.add_argument(
        "--group-wait-ms", type=number(0), default=30000.0, help="release an incomplete group after this long"
    )
    rl.add_argument("--n-max", type=POSITIVE, default=8, help="responses judged together at most (a group's chunks)")
    rl.add_argument("--cache-size", type=COUNT, default=4096, help="identical requests (retries) answered from a cache")
    rl.add_argument("--cache-ttl", type=number(0), default=600.0, help="seconds a cached result stays")
    rl.add_argument("--policy-tokenizer", default=None, help="tokenizer whose special tokens de-template the policy's")
    rl.add_argument("--length-penalty", type=number(0), default=0.0, help="reward shaping within a group (0: off)")
    rl.add_argument(
        "--failed-reward", type=_failed_reward, default=0.0, help="reward of an unscored sample: a number, or min"
    )
    p.set_defaults(func=_serve_command)


def _failed_reward(text: str) -> float | str:
    """``--failed-reward``: ``min`` (the group's lowest reward) or a number."""
    return "min" if text == "min" else real(text)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_score,
    _register_train,
    _register_eval,
    _register_serve,
]
"""Each entry adds one sub-command (with ``set_defaults(func=...)``) to the ``grm`` parser."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grm", description="Generative reward models: score, evaluate, train, serve.", epilog=TERMINAL_HELP
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging: grm's and the libraries' DEBUG lines, with the HTTP libraries' line per request",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``grm ARGV``; the exit code: 0 done, 1 done with error rows, 2 a bad flag, input or setting (nothing
    loaded or written; a flag that does not parse exits by argparse's SystemExit(2)), 3 stopped by a fault of the
    environment (what was written is kept), 130 interrupted."""
    args = build_parser().parse_args(argv)  # a malformed flag: argparse's usage and SystemExit(2)
    setup_console(args.verbose)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        logger.error("interrupted; what was finished is saved: run the same command again to resume")
        return 130
    except JobStopped as e:
        logger.error("%s", e)
        return 3
    except BackendUnavailableError as e:
        logger.error("%s; what was finished is saved: run the same command again to resume", e)
        return 3
    except ImportError as e:
        line = missing_extra(e)
        if line is None:
            raise
        logger.error("%s", line)
        return 2
    except (ValueError, TypeError, OSError) as e:
        logger.error("%s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
