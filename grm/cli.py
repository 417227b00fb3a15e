"""The ``grm`` command line. Each command registers itself with :func:`register` below."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from grm.backends import BACKENDS, BackendUnavailableError
from grm.isolation import score_isolated
from grm.jsonl import JsonlWriter, load_finished, plain_id, read_rows
from grm.prompts import brief
from grm.types import Item

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
    return GRM.from_pretrained(
        args.model,
        args.backend,
        template=args.template,
        max_new_tokens=args.max_new_tokens,
        max_retries=args.max_retries,
        **kwargs,
    )


ITEM_FIELDS = ("query", "responses", "principles", "reference")
"""The input columns an Item is made of; any other column (labels, metadata) is ignored."""


def row_item(number: int, row: Any) -> tuple[Any, Item | None, str | None]:
    """``(id, item, error)`` for input row ``number`` (its 1-based line): the row's ``id`` and its Item, or an error
    naming the line and what is wrong (a wrong type, a missing field, an id that is not a string, a finite number
    or null). Never raises, whatever the row holds."""
    if not isinstance(row, dict):
        return None, None, f"line {number}: expected a JSON object, got {type(row).__name__}"
    row_id = row.get("id")
    if not plain_id(row_id):
        return None, None, f"line {number}: id must be a string, a finite number or null, got {brief(row_id)}"
    try:
        return row_id, Item.coerce({k: row[k] for k in ITEM_FIELDS if k in row}), None
    except (TypeError, ValueError) as e:
        return row_id, None, f"line {number}: {e}"
    except Exception as e:  # e.g. a structure nested too deeply to inspect
        return row_id, None, f"line {number}: unreadable row ({type(e).__name__})"


def _score_command(args: argparse.Namespace) -> int:
    done = load_finished(args.output, "index", keep=lambda row: "error" in row)
    if done:
        failed = sum(done.values())
        logger.info(
            "%s: %d rows already done (%d with errors: delete those lines to retry them)",
            args.output,
            len(done),
            failed,
        )
    rm, meta_rm = load_grm(args), load_meta_rm(args)
    pending: list[tuple[int, Any, Item]] = []
    n_scored = n_errors = 0

    def write_error(writer: JsonlWriter, index: int, row_id: Any, error: str) -> None:
        nonlocal n_errors
        logger.warning("%s: %s", args.input, error)
        writer.write({"index": index, "id": row_id, "error": error})
        n_errors += 1

    def flush(writer: JsonlWriter) -> None:
        nonlocal n_scored
        if not pending:
            return
        results = score_isolated(
            rm,
            [it for _, _, it in pending],
            keys=[index for index, _, _ in pending],  # a row is seeded by its index: chunks and resuming change nothing
            meta_rm=meta_rm,
            k_meta=args.k_meta,
            k=args.k,
            seed=args.seed,
            temperature=args.temperature,
            shuffle=not args.no_shuffle,
        )
        for (index, row_id, _), result in zip(pending, results):
            if isinstance(result, Exception):
                write_error(
                    writer, index, row_id, f"line {index + 1}: scoring failed: {type(result).__name__}: {result}"
                )
            else:
                writer.write({"index": index, "id": row_id, **result.to_dict()})
                n_scored += 1
        bar.update(len(pending))
        pending.clear()

    with JsonlWriter(args.output) as writer, tqdm(desc="score", unit="row") as bar:
        for number, row, error in read_rows(args.input):
            index = number - 1
            if index in done:
                continue
            row_id, item, error = (None, None, error) if error else row_item(number, row)
            if item is None:
                write_error(writer, index, row_id, error)  # type: ignore[arg-type]
                bar.update(1)
                continue
            pending.append((index, row_id, item))
            if len(pending) >= args.chunk_size:
                flush(writer)
        flush(writer)
    logger.info(
        "scored %d rows, %d failed, %d skipped as done; output in %s", n_scored, n_errors, len(done), args.output
    )
    return 1 if n_errors else 0


def _register_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score JSONL rows of {query, responses} with a GRM",
        description="Score each input row (query: string or chat messages; responses: list of strings; optional "
        "id, principles, reference). Output rows hold index, id, rewards, best, mean and judgements. Re-running "
        "with the same output skips the rows already written.",
    )
    add_model_args(p)
    add_meta_args(p)
    p.add_argument("--input", required=True, type=Path, help="input JSONL")
    p.add_argument("--output", required=True, type=Path, help="output JSONL (appended to; resumes)")
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
    p.add_argument("--chunk-size", type=int, default=64, help="rows sent to the backend per call")
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
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
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
