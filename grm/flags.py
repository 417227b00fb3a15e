"""Command-line flags shared by grm's commands, declared once with one set of defaults, and what they become: the
:class:`~grm.scoring.ScoringOptions` (:func:`scoring_options`), the GRM and meta RM to load here or as Ray replicas
(:func:`open_scorer`, :func:`ray_replica`) and the model's recorded settings (:func:`model_settings`).

Numbers are read in ASCII digits only (``٣``, ``７`` or ``𝟕`` are refused). Every value is checked before any model
is loaded or any output opened: a scoring option's range by :class:`~grm.scoring.ScoringOptions` (one place, its
errors naming the option), the others' by their flag's type.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from grm.backends import BACKENDS
from grm.jobs import model_settings as job_model_settings
from grm.scoring import TOURNAMENTS, ScoringOptions, check_meta_rm

_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ASCII digits, in ``low..high`` where given."""

    def read(text: str) -> int:
        if not _INTEGER.fullmatch(text):
            raise argparse.ArgumentTypeError(f"expected a whole number in ASCII digits (0-9), got {text!r}")
        return _within(int(text), low, high)

    return read


def number(low: float | None = None, high: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite decimal number in ASCII (``0.5``, ``1e-3``), at least ``low`` (more than it
    with ``above``) and at most ``high`` where given."""

    def read(text: str) -> float:
        if not _DECIMAL.fullmatch(text):
            raise argparse.ArgumentTypeError(f"expected a finite number in ASCII digits (e.g. 0.5), got {text!r}")
        value = float(text)
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if above and low is not None and value <= low:
            raise argparse.ArgumentTypeError(f"expected a number above {low}, got {text}")
        return _within(value, low, high)

    return read


def _within(value: Any, low: float | None, high: float | None) -> Any:
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"<= {high}" if low is None else f">= {low}" if high is None else f"in {low}..{high}"
        raise argparse.ArgumentTypeError(f"expected a number {span}, got {value}")
    return value


def real(text: str) -> float:
    """An argparse ``type``: a number in ASCII (``0.5``, ``1e-3``, also ``nan`` and ``inf``), its range left to
    whoever takes it (:class:`~grm.scoring.ScoringOptions` checks its own, naming the option)."""
    if text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity") or _DECIMAL.fullmatch(text):
        return float(text)
    raise argparse.ArgumentTypeError(f"expected a number in ASCII digits (e.g. 0.5), got {text!r}")


def budget(text: str) -> int | float:
    """``--budget``: a fraction of k per row (``0.5`` or ``50%``) or a whole number of judgements (``200``), in
    ASCII; its range is :class:`~grm.scoring.ScoringOptions`' to check."""
    try:
        if _INTEGER.fullmatch(text):
            return int(text)
        return real(text[:-1]) / 100 if text.endswith("%") else real(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction (0.5, 50%) or a number of judgements, got {text!r} (in ASCII digits)"
        ) from None


POSITIVE = integer(1)
COUNT = integer(0)


# ---------------------------------------------------------------------------------------------------- flags


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """The GRM to load and its engine."""
    p.add_argument(
        "--model", default=None, help="local path or hub id of the GRM (default: the tiny GRM shipped with grm)"
    )
    p.add_argument("--backend", default="transformers", choices=BACKENDS, help="generation engine")
    p.add_argument(
        "--judge",
        default=None,
        help="judge format (docs/judges.md): spct, deepseek-grm, prometheus-absolute, prometheus-relative, "
        "pairwise-verdict, rm-r1, reward-anything, nemotron-genrm, flow-judge, selene "
        "(default: the model's, else spct)",
    )
    p.add_argument(
        "--template", default=None, help="a .j2 file or built-in template replacing the judge format's prompt"
    )
    p.add_argument(
        "--gguf-file", default=None, help="a GGUF file in the --model folder to load (transformers, extra gguf)"
    )
    p.add_argument("--batch-size", type=POSITIVE, default=None, help="sequences per forward batch (transformers)")
    p.add_argument(
        "--threads",
        type=POSITIVE,
        default=None,
        help="torch threads in this process (transformers; default: 1 for the shipped tiny GRM, whose work is too "
        "small to share, else torch's default)",
    )
    p.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (transformers)")
    p.add_argument("--dtype", default=None, help="e.g. float32, bfloat16 (transformers)")
    p.add_argument(
        "--backend-arg",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="extra backend option, value parsed as JSON when possible (repeatable)",
    )


def add_meta_flags(p: argparse.ArgumentParser) -> None:
    """Meta-RM-guided voting."""
    p.add_argument("--meta-rm", default=None, help="meta RM path or hub id: vote only the judgements it rates best")
    p.add_argument("--k-meta", type=POSITIVE, default=None, help="judgements the meta RM keeps (default: k/2)")


def add_scoring_flags(
    p: argparse.ArgumentParser, *, sampling: bool = True, rounds: bool = True, k_help: str = "judgements per row"
) -> None:
    """The scoring options (:class:`grm.ScoringOptions`), with the same flags and defaults in every command: ``-k``,
    ``--max-new-tokens``, ``--max-retries``; with ``sampling`` ``--seed``, ``--temperature``, ``--no-shuffle``;
    with ``rounds`` adaptive compute (``--adaptive``, ``--risk``, ``--budget``)."""
    p.add_argument("-k", type=POSITIVE, default=1, help=f"{k_help} (default: %(default)s; k=1 is greedy)")
    p.add_argument(
        "--max-new-tokens", type=POSITIVE, default=None, help="tokens per judgement (default: the model's, else 1024)"
    )
    p.add_argument(
        "--max-retries", type=COUNT, default=0, help="resample unreadable judgements up to N times (default: 0)"
    )
    p.add_argument(
        "--thinking-tokens",
        type=COUNT,
        default=None,
        help="room for a thinking judge's reasoning, added to the answer's",
    )
    p.add_argument(
        "--strip-thinking", action="store_true", help="drop each response's own <think> block and end tokens first"
    )
    p.add_argument(
        "--tournament",
        choices=TOURNAMENTS,
        default="all-pairs",
        help="how a pairwise judge ranks more than 2 responses (default: %(default)s)",
    )
    if sampling:
        p.add_argument(
            "--seed",
            type=integer(),
            default=None,
            help="seed for shuffling, sampling and tie-breaks; each row is seeded by it and its own key, so chunking "
            "and resuming change nothing (default: drawn, and recorded with the output)",
        )
        p.add_argument("--temperature", type=real, default=None, help="default: 0 for k=1, 0.5 for k>1")
        p.add_argument("--no-shuffle", action="store_true", help="show the responses in input order every time")
    if rounds:
        p.add_argument("--adaptive", action="store_true", help="draw judgements in rounds; stop a row once decided")
        p.add_argument("--risk", type=real, default=0.0, help="with --adaptive: stop once a change is this unlikely")
        p.add_argument(
            "--budget",
            type=budget,
            default=None,
            help="most judgements per --chunk-size call: a fraction of k per row (0.5 or 50%%) or a count",
        )


def add_chunk_flag(p: argparse.ArgumentParser, default: int, what: str = "rows") -> None:
    """``--chunk-size``: how many rows (items, examples) go to the backend per call."""
    p.add_argument(
        "--chunk-size",
        type=POSITIVE,
        default=default,
        help=f"{what} sent to the backend per call (--ray: per replica call, or split over the replicas) "
        "(default: %(default)s)",
    )


def add_ray_flags(p: argparse.ArgumentParser) -> None:
    """Running on a Ray cluster (see :mod:`grm.distributed`)."""
    p.add_argument("--ray", action="store_true", help="score on a Ray cluster with --replicas copies of the GRM")
    p.add_argument("--address", default=None, help="Ray cluster to join (e.g. auto); default: start a local one")
    p.add_argument(
        "--replicas", type=POSITIVE, default=2, help="GRM replicas (Ray actors), each loading the model once"
    )
    p.add_argument("--gpus-per-replica", type=number(0), default=0, help="GPUs each replica holds (e.g. 1 for vLLM)")
    p.add_argument("--cpus-per-replica", type=number(0, above=True), default=1, help="CPUs each replica holds")


# ---------------------------------------------------------------------------------------------------- values


def scoring_options(args: argparse.Namespace) -> ScoringOptions:
    """The :class:`~grm.scoring.ScoringOptions` the flags ask for, validated (ValueError naming the flag's option),
    with the meta RM checked against ``--k-meta`` when the command has the meta-RM flags."""
    options = ScoringOptions(
        k=args.k,
        seed=getattr(args, "seed", None),
        temperature=getattr(args, "temperature", None),
        shuffle=not getattr(args, "no_shuffle", False),
        max_new_tokens=args.max_new_tokens,
        max_retries=args.max_retries,
        k_meta=getattr(args, "k_meta", None),
        adaptive=getattr(args, "adaptive", False),
        risk=getattr(args, "risk", 0.0),
        budget=getattr(args, "budget", None),
        thinking_tokens=args.thinking_tokens,
        strip_thinking=args.strip_thinking,
        tournament=args.tournament,
    )
    check_meta_rm(options, rated=getattr(args, "meta_rm", None) is not None)
    return options


def grm_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """:meth:`grm.GRM.from_pretrained`'s keyword arguments from the flags (all but the model and the backend);
    ``--max-new-tokens`` and ``--max-retries`` are the GRM's defaults too, so a server's requests get them."""
    kwargs: dict[str, Any] = {}
    for name in ("batch_size", "device", "dtype", "gguf_file"):
        if getattr(args, name, None) is not None:
            kwargs[name] = getattr(args, name)
    for item in args.backend_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--backend-arg {item!r}: expected KEY=VALUE")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return {
        "judge": args.judge,
        "template": args.template,
        "max_new_tokens": args.max_new_tokens,
        "max_retries": args.max_retries,
        **kwargs,
    }


def model_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The model's settings recorded with an output (:func:`grm.jobs.model_settings`), from the flags."""
    return job_model_settings(args.model, args.backend, grm_kwargs(args), getattr(args, "meta_rm", None))


def check_model_flags(args: argparse.Namespace) -> None:
    """The model flags that can be checked without loading anything: the backend arguments and the template."""
    grm_kwargs(args)
    if args.judge is not None:
        from grm.judges import get_judge

        get_judge(args.judge)
    if args.template is not None:
        from grm.prompts import PromptTemplate

        PromptTemplate.load(args.template)


def load_grm(args: argparse.Namespace, **overrides: Any):
    """The GRM the flags name, loaded in this process (``overrides`` go to its backend)."""
    from grm.model import GRM
    from grm.progress import adopt_library_logs

    set_threads(args)
    rm = GRM.from_pretrained(args.model, args.backend, **{**grm_kwargs(args), **overrides})
    adopt_library_logs()  # the engine's libraries are imported now: their warnings go through grm's handler
    return rm


def set_threads(args: argparse.Namespace) -> None:
    """``--threads``, else one thread for the shipped GRM on the transformers backend: a 0.9M-parameter model's
    operations are too small to share between threads, which then mostly wait on each other (docs/performance.md:
    the main job took 9.5 s with one thread and 41.8 s with two on 2 busy cores)."""
    threads = getattr(args, "threads", None)
    if threads is None and args.model is None and args.backend == "transformers":
        threads = 1
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def load_meta_rm(args: argparse.Namespace, **overrides: Any):
    """The meta RM the flags name, or None (``overrides`` go to :meth:`grm.MetaRM.from_pretrained`)."""
    if getattr(args, "meta_rm", None) is None:
        return None
    from grm.meta_rm import MetaRM

    return MetaRM.from_pretrained(args.meta_rm, **{"device": args.device, **overrides})


@contextlib.contextmanager
def open_scorer(args: argparse.Namespace) -> Iterator[tuple[Any, Any]]:
    """``with open_scorer(args) as (grm, meta_rm):`` the GRM and meta RM (or None) named by the flags, loaded in
    this process, or with ``--ray`` a GRM whose engine and meta RM are ``--replicas`` replicas on a Ray cluster
    (:func:`grm.distributed.ray_grm`); the engine is closed at the end (the replicas released)."""
    if getattr(args, "ray", False):
        from grm.distributed import ray_grm

        rm, meta_rm = ray_grm(ray_replica(args), replicas=args.replicas, address=args.address, verbose=args.verbose)
    else:
        rm, meta_rm = load_grm(args), load_meta_rm(args)
    try:
        yield rm, meta_rm
    finally:
        close = getattr(rm.backend, "close", None)
        if callable(close):
            close()


def ray_replica(args: argparse.Namespace):
    """The :class:`grm.distributed.Replica` the model, meta-RM and Ray flags name."""
    from grm.distributed import Replica

    meta_rm = getattr(args, "meta_rm", None)
    return Replica(
        args.model,
        args.backend,
        grm_kwargs(args),
        meta_rm,
        {} if args.device is None else {"device": args.device},
        num_cpus=args.cpus_per_replica,
        num_gpus=args.gpus_per_replica,
    )
