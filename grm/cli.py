"""The ``grm`` command line. Each command registers itself with :func:`register` below."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from tqdm.auto import tqdm

from grm.backends import BACKENDS, BackendUnavailableError
from grm.isolation import score_rows
from grm.jsonl import JsonlWriter
from grm.outputs import ScoreOutput
from grm.rows import Columns, RowItem, row_item
from grm.sources import Source

logger = logging.getLogger("grm")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that loads a GRM."""
    p.add_argument(
        "--model", default=None, help="local path or hub id of the GRM (default: the tiny GRM shipped with grm)"
    )
    p.add_argument("--backend", default="transformers", choices=BACKENDS, help="generation engine")
    p.add_argument(
        "--template", default=None, help="built-in template name or a .j2 file (default: the model's, else default)"
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=None, help="tokens per judgement (default: the model's, else 1024)"
    )
    p.add_argument("--max-retries", type=int, default=0, help="resample unparseable judgements up to N times")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per forward batch (transformers)")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (transformers)")
    p.add_argument("--dtype", default=None, help="e.g. float32, bfloat16 (transformers)")
    p.add_argument(
        "--backend-arg",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="extra backend option, value parsed as JSON when possible (repeatable)",
    )


def add_meta_args(p: argparse.ArgumentParser) -> None:
    """Options for meta-RM-guided voting."""
    p.add_argument("--meta-rm", default=None, help="meta RM path or hub id: vote only the judgements it rates best")
    p.add_argument("--k-meta", type=int, default=None, help="judgements the meta RM keeps (default k/2)")


def load_meta_rm(args: argparse.Namespace):
    """The meta RM named by :func:`add_meta_args` options, or None."""
    if args.meta_rm is None:
        if args.k_meta is not None:
            raise ValueError("--k-meta needs --meta-rm")
        return None
    from grm.meta_rm import MetaRM

    return MetaRM.from_pretrained(args.meta_rm, device=args.device)


def load_grm(args: argparse.Namespace):
    """Build a GRM from :func:`add_model_args` options."""
    from grm.model import GRM

    return GRM.from_pretrained(args.model, args.backend, **grm_kwargs(args))


def grm_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """:meth:`grm.GRM.from_pretrained`'s keyword arguments from :func:`add_model_args` options (all but the model
    and the backend)."""
    kwargs: dict[str, Any] = {}
    for name in ("batch_size", "device", "dtype"):
        if getattr(args, name, None) is not None:
            kwargs[name] = getattr(args, name)
    for item in args.backend_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--backend-arg {item!r}: expected KEY=VALUE")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return {"template": args.template, "max_new_tokens": args.max_new_tokens, "max_retries": args.max_retries, **kwargs}


@contextlib.contextmanager
def open_scorer(args: argparse.Namespace) -> Iterator[tuple[Any, Any]]:
    """``with open_scorer(args) as (grm, meta_rm):`` the GRM and meta RM (or None) named by the options, loaded in
    this process, or with ``--ray`` (see :func:`add_ray_args`) a GRM whose engine and meta RM are ``--replicas``
    replicas on a Ray cluster (:func:`grm.distributed.ray_grm`); the engine is closed at the end (the replicas
    released)."""
    if args.ray:
        from grm.distributed import ray_grm

        rm, meta_rm = ray_grm(ray_replica(args), replicas=args.replicas, address=args.address, verbose=args.verbose)
    else:
        rm, meta_rm = load_grm(args), load_meta_rm(args) if hasattr(args, "meta_rm") else None
    try:
        yield rm, meta_rm
    finally:
        close = getattr(rm.backend, "close", None)
        if callable(close):
            close()


def add_ray_args(p: argparse.ArgumentParser) -> None:
    """Options for running on a Ray cluster (see :mod:`grm.distributed`)."""
    p.add_argument("--ray", action="store_true", help="score on a Ray cluster with --replicas copies of the GRM")
    p.add_argument("--address", default=None, help="Ray cluster to join (e.g. auto); default: start a local one")
    p.add_argument("--replicas", type=int, default=2, help="GRM replicas (Ray actors), each loading the model once")
    p.add_argument("--gpus-per-replica", type=float, default=0, help="GPUs each replica holds (e.g. 1 for vLLM)")
    p.add_argument("--cpus-per-replica", type=float, default=1, help="CPUs each replica holds")


def ray_replica(args: argparse.Namespace):
    """The :class:`grm.distributed.Replica` named by :func:`add_model_args`, :func:`add_meta_args` (if the command
    has them) and :func:`add_ray_args` options."""
    from grm.distributed import Replica

    meta_rm = getattr(args, "meta_rm", None)  # commands without add_meta_args have none
    if meta_rm is None and getattr(args, "k_meta", None) is not None:
        raise ValueError("--k-meta needs --meta-rm")
    meta_kwargs = {} if args.device is None else {"device": args.device}
    return Replica(
        args.model,
        args.backend,
        grm_kwargs(args),
        meta_rm,
        meta_kwargs,
        num_cpus=args.cpus_per_replica,
        num_gpus=args.gpus_per_replica,
    )


ERROR_WARNINGS = 10
"""Error rows logged one by one by ``grm score``; the rest are only counted (each is in the output)."""


def _score_command(args: argparse.Namespace) -> int:
    columns = Columns.parse(args.query_column, args.responses_column, args.response_columns)
    if args.ray:
        return _score_on_ray(args, columns)
    source = Source(args.input, split=args.split, name=args.subset)
    if args.split is None and len(source.splits) > 1:
        raise ValueError(f"{args.input} has the splits {source.splits}: choose one with --split")
    output = ScoreOutput(args.output)
    done = output.finished("index", keep=lambda row: "error" in row)
    if done:
        failed = sum(done.values())
        logger.info(
            "%s: %d rows already done (%d with errors: delete those lines to retry them)",
            output.jsonl,
            len(done),
            failed,
        )
    rm, meta_rm = load_grm(args), load_meta_rm(args)
    pending: list[tuple[int, str, RowItem]] = []
    n_scored = n_errors = 0

    def write_error(writer: JsonlWriter, index: int, row_id: Any, error: str) -> None:
        nonlocal n_errors
        n_errors += 1
        if n_errors <= ERROR_WARNINGS:
            logger.warning("%s: %s", args.input, error)
        elif n_errors == ERROR_WARNINGS + 1:
            logger.warning("more rows cannot be scored; see their error rows in %s", output)
        writer.write({"index": index, "id": row_id, "error": error})

    def flush(writer: JsonlWriter) -> None:
        nonlocal n_scored
        if not pending:
            return
        # a row is seeded by its index: chunks and resuming change nothing
        for row in score_rows(rm, pending, meta_rm=meta_rm, **_score_options(args)):
            if "error" in row:
                write_error(writer, row["index"], row["id"], row["error"])
            else:
                writer.write(row)
                n_scored += 1
        bar.update(len(pending))
        pending.clear()

    try:
        with output.writer() as writer, tqdm(desc="score", unit="row", total=source.total, initial=len(done)) as bar:
            for record in source:
                index = record.position
                if index in done:
                    continue
                if record.error is None:
                    parsed = row_item(record.row, record.where, columns)
                else:
                    parsed = RowItem(None, None, error=record.error)
                if parsed.item is None:
                    write_error(writer, index, parsed.id, str(parsed.error))
                    bar.update(1)
                    continue
                pending.append((index, record.where, parsed))
                if len(pending) >= args.chunk_size:
                    flush(writer)
            flush(writer)
    except BrokenPipeError:  # `grm score --output - | head`: the reader has all it wanted
        with contextlib.suppress(OSError, ValueError):  # so that Python's flush at exit is quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        logger.info("standard output was closed after %d rows", n_scored + n_errors)
        return 0
    output.finish()
    logger.info("scored %d rows, %d failed, %d skipped as done; output in %s", n_scored, n_errors, len(done), output)
    return 1 if n_errors else 0


def _score_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "k_meta": args.k_meta,
        "k": args.k,
        "seed": args.seed,
        "temperature": args.temperature,
        "shuffle": not args.no_shuffle,
        **adaptive_options(args),
    }


def add_adaptive_args(p: argparse.ArgumentParser) -> None:
    """Options for adaptive compute (docs/adaptive-compute.md)."""
    p.add_argument("--adaptive", action="store_true", help="draw judgements in rounds; stop an item once decided")
    p.add_argument("--risk", type=float, default=0.0, help="with --adaptive: stop once a change is this unlikely")
    p.add_argument(
        "--budget",
        type=_budget,
        default=None,
        help="most judgements per --chunk-size call: a fraction of k per row (0.5 or 50%%) or a count",
    )


def adaptive_options(args: argparse.Namespace) -> dict[str, Any]:
    """The scoring options named by :func:`add_adaptive_args` options."""
    return {"adaptive": args.adaptive, "risk": args.risk, "budget": args.budget}


def _budget(text: str) -> int | float:
    """``--budget``: ``50%`` or ``0.5`` (a fraction of k per row), or a whole number of judgements."""
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else int(text) if text.isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction (0.5, 50%) or a number of judgements, got {text!r}"
        ) from None


def _score_on_ray(args: argparse.Namespace, columns: Columns) -> int:
    from grm.distributed import score_on_ray

    if args.output == "-":
        raise ValueError("--ray writes to a file (rows arrive out of order and a re-run resumes from it), not to -")
    stats = score_on_ray(
        args.input,
        args.output,
        ray_replica(args),
        replicas=args.replicas,
        batch_size=args.chunk_size,
        columns=columns,
        split=args.split,
        subset=args.subset,
        address=args.address,
        verbose=args.verbose,
        **_score_options(args),
    )
    logger.info(
        "scored %d rows on Ray (%d replicas), %d failed, %d skipped as done; output in %s",
        stats.scored,
        args.replicas,
        stats.failed,
        stats.skipped,
        args.output,
    )
    return 1 if stats.failed else 0


def _register_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score rows (JSONL, JSON, parquet, CSV, a folder or a hub dataset) with a GRM",
        description="Score each input row. A row is read in the first shape it fits: {query, responses} (query: a "
        "string or chat messages; responses: a list of strings), a preference pair {prompt, chosen, rejected} "
        "(strings or chat messages; the output says which won and by what margin), or one response {prompt or "
        "query, response or completion}; the column flags name other columns. Optional columns: id, principles, "
        "reference. Output rows hold index, id, rewards, best, mean and judgements; a row that cannot be read or "
        "scored gets an error naming it. Re-running with the same output skips the rows already written.",
    )
    add_model_args(p)
    add_meta_args(p)
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
        help="output JSONL (appended to; re-running resumes), a .parquet file (written at the end from "
        "OUTPUT.cache.jsonl, which resumes), or - for standard output (progress and logs go to standard error)",
    )
    p.add_argument("-k", type=int, default=1, help="judgements sampled per row (k=1: greedy)")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for shuffling, sampling and tie-breaks; each row is seeded by it and the row's index, so a seeded "
        "run gives the same output whatever --chunk-size, and when resumed",
    )
    p.add_argument("--temperature", type=float, default=None, help="default: 0 for k=1, 0.5 for k>1")
    p.add_argument("--no-shuffle", action="store_true", help="keep the responses in input order")
    add_adaptive_args(p)
    p.add_argument("--chunk-size", type=int, default=64, help="rows per backend call (--ray: per replica call)")
    add_ray_args(p)
    p.set_defaults(func=_score_command)


def _register_train(sub: argparse._SubParsersAction) -> None:
    from grm.training.cli import register

    register(sub)


def _register_eval(sub: argparse._SubParsersAction) -> None:
    from grm.eval.cli import register

    register(sub)


def _serve_command(args: argparse.Namespace) -> int:
    from grm.server import ServerConfig, serve

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
        default_k=args.k,
    )
    serve(load_grm(args), host=args.host, port=args.port, config=config, meta_rm=load_meta_rm(args))
    return 0


def _register_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a GRM over HTTP (POST /score, OpenRLHF POST /get_reward, GET /health)",
        description="Serve a GRM over HTTP with dynamic batching of concurrent requests. The API key may also "
        "come from the GRM_API_KEY environment variable.",
    )
    add_model_args(p)
    add_meta_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: $GRM_API_KEY)")
    p.add_argument("-k", type=int, default=1, help="judgements per request when the request names no k")
    p.add_argument("--max-batch-items", type=int, default=64, help="items scored together at most")
    p.add_argument("--batch-window-ms", type=float, default=10.0, help="how long a batch waits for company")
    p.add_argument("--max-responses", type=int, default=32, help="responses per request at most")
    p.add_argument("--max-k", type=int, default=64, help="largest k a request may ask for")
    p.add_argument("--max-body-bytes", type=int, default=4_000_000, help="larger bodies get 413")
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds to send a body; slower gets 408")
    p.add_argument("--max-reward-items", type=int, default=1024, help="items per /get_reward request at most")
    p.add_argument(
        "--max-in-flight", type=int, default=512, help="requests being scored at once (bodies received); more get 503"
    )
    p.set_defaults(func=_serve_command)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_score,
    _register_train,
    _register_eval,
    _register_serve,
]
"""Each entry adds one sub-command (with ``set_defaults(func=...)``) to the ``grm`` parser."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grm", description="Generative reward models: score, evaluate, train, serve.")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, with the HTTP libraries' line per request"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


QUIET_LOGGERS = ("httpx", "httpcore", "urllib3", "huggingface_hub", "datasets", "fsspec", "filelock")
"""Libraries that log each request or file at INFO level: heard only with ``-v``."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except BackendUnavailableError as e:
        logger.error("%s; what was finished is saved: run the same command again to resume", e)
        return 3
    except (ValueError, TypeError, OSError) as e:
        logger.error("%s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
