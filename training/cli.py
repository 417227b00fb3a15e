"""``grm train ...``: one sub-command per trainer, each added by a function in :data:`TRAINERS`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

TRAINERS: list[Callable[[argparse._SubParsersAction], None]] = []
"""Each entry adds one ``grm train NAME`` sub-command (with ``set_defaults(func=...)``)."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` command group to the ``grm`` parser."""
    p = sub.add_parser("train", help="train a GRM or a meta RM, or make their data (grm train --help lists how)")
    trainers = p.add_subparsers(dest="trainer", required=True, metavar="TRAINER")
    for add in TRAINERS:
        add(trainers)
    names = ", ".join(trainers.choices)
    p.description = f"Train a GRM or a meta RM, or make their data. Trainers: {names}; grm train TRAINER --help."


def _register_meta_rm(trainers: argparse._SubParsersAction) -> None:
    """``grm train meta-rm-data`` (sample and label judgements) and ``grm train meta-rm`` (BCE training)."""
    from pathlib import Path

    from grm.flags import add_chunk_flag, add_model_flags, add_ray_flags, add_scoring_flags

    def run(name: str) -> Callable[[argparse.Namespace], int]:
        def command(args: argparse.Namespace) -> int:  # imports the trainer (torch, transformers) only when run
            from grm.training import meta_rm

            return getattr(meta_rm, name)(args)

        return command

    d = trainers.add_parser(
        "meta-rm-data",
        help="sample judgements of labelled examples with a GRM and label each correct or not",
        description="Sample k judgements per labelled example (pairs, best-of-N lists, ratings, labelled single "
        "responses: see grm.training.data) and write one row per judgement, labelled 1 (correct) or 0. Resumes.",
    )
    add_model_flags(d)
    d.add_argument("--input", required=True, help="labelled data: a file or dataset grm.training.data reads")
    d.add_argument("--format", default="auto", help="data format (see grm.training.data.FORMATS); default: per row")
    d.add_argument("--output", required=True, type=Path, help="JSONL of labelled judgements (appended to; resumes)")
    add_scoring_flags(d, rounds=False, k_help="judgements sampled and labelled per example")
    add_chunk_flag(d, 16, "examples")
    add_ray_flags(d)
    d.set_defaults(func=run("data_command"))
    # '+' prefix: every token after `meta-rm` (--config FILE, --max_steps 10, --help ...) goes to TrlParser.
    t = trainers.add_parser(
        "meta-rm",
        prefix_chars="+",
        add_help=False,
        help="train a meta RM with BCE: --config FILE (YAML of MetaRMConfig), other fields as --flags",
    )
    t.add_argument("args", nargs=argparse.REMAINDER)
    t.set_defaults(func=run("train_command"))


TRAINERS.append(_register_meta_rm)


def _register_spct(trainers: argparse._SubParsersAction) -> None:
    """``grm train rft`` (rejective fine-tuning) and ``grm train grpo`` (rule-based online RL)."""

    def run(module: str) -> Callable[[argparse.Namespace], int]:
        def command(args: argparse.Namespace) -> int:  # imports the trainer (TRL) only when run
            from importlib import import_module

            return import_module(f"grm.training.{module}").main(args.args)

        return command

    helps = {
        "rft": "rejective fine-tuning: sample judgements, keep the correct ones, SFT on them (RFTConfig)",
        "grpo": "rule-based online RL with GRPO and the +1/-1 SPCT reward (SPCTGRPOConfig)",
    }
    for name, text in helps.items():
        # '+' prefix: every token after the name (--config FILE, --max_steps 10, --help ...) goes to TrlParser.
        p = trainers.add_parser(name, prefix_chars="+", add_help=False, help=f"{text}: --config FILE, --flags")
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(func=run(name))


TRAINERS.append(_register_spct)


def _register_default_grm(trainers: argparse._SubParsersAction) -> None:
    """``grm train default-grm``: the whole pipeline that builds the GRM and meta RM shipped with grm."""

    def command(args: argparse.Namespace) -> int:  # imports the trainers (TRL) only when run
        from grm.training.default_grm import main

        return main(args.args)

    p = trainers.add_parser(
        "default-grm",
        prefix_chars="+",
        add_help=False,
        help="build the default GRM and meta RM on the synthetic task (SFT, RFT, GRPO, meta RM, eval, report): "
        "--config FILE, --flags",
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=command)


TRAINERS.append(_register_default_grm)
