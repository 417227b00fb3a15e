"""Rejective fine-tuning (SPCT's cold start): sample judgements, keep the correct ones, SFT on them.

For each labelled example the GRM (any backend; vLLM for speed) samples ``n_rft`` judgements, each with its
own shuffled response order. Incorrect judgements (by :func:`grm.training.is_correct`) are dropped, and so are
examples whose ``n_rft`` judgements were all correct (too easy). Optional **hinted sampling** draws one judgement
from a prompt that names the best response (or, for one response, its true score) and keeps it if correct:
``hinted_sampling="fallback"`` does so for examples none of whose ``n_rft`` samples was correct, ``"only"``
instead of unhinted sampling. A hinted sample goes through the scoring plan like the others (the example with its
``hint`` set, keyed ``hint:<index>``). A hinted judgement is trained on the prompt **without** the hint, so the
model learns to reach the answer unaided. With a user ``rule`` (:mod:`grm.training.rules`) a judgement must also
pass it to count as correct here (kept, and counted towards "too easy").

Files in the RFT data folder (``rft_data_dir``, default ``OUTPUT_DIR/rft_data``):

- ``records.jsonl``: one row per sampled example (``index``, ``id``, ``status``: kept / too_easy /
  all_incorrect, and every sampled judgement with its order, scores, correctness, ``rule`` (whether it passed the
  user rule; None without one) and text); appended as it goes,
  so an interrupted run resumes where it stopped;
- ``sft.jsonl``: the SFT set in TRL's conversational prompt/completion format: ``prompt`` holds the system and
  user messages exactly as sent (in the judgement's response order, no hint), ``completion`` the judgement as
  the assistant turn;
- ``stats.json``: loading and rejection statistics, written when sampling is complete; while it exists,
  sampling is skipped (delete it to sample more).

Then TRL's ``SFTTrainer`` trains on ``sft.jsonl`` with the loss on the assistant turn only.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from trl import SFTConfig

from grm.jsonl import JsonlWriter, load_finished, read_rows
from grm.model import GRM
from grm.progress import progress_bar, setup_console
from grm.rule import best_index, is_correct
from grm.scoring import SAMPLING_TEMPERATURE, ScoringOptions, resolve_options
from grm.training.common import (
    GRMTrainingArguments,
    check_common,
    fit_to_device,
    log_saved,
    lora_config,
    parse_config,
    resume_checkpoint,
    save_prompting,
)
from grm.training.data import LoadStats, iter_examples
from grm.training.rules import Rule, load_rule, passes
from grm.types import Example, Judgement

logger = logging.getLogger(__name__)

HINTED_SAMPLING = ("off", "fallback", "only")


def _check_sampling(n_rft: int, hinted_sampling: str) -> None:
    if hinted_sampling not in HINTED_SAMPLING:
        raise ValueError(f"hinted_sampling must be one of {HINTED_SAMPLING}, got {hinted_sampling!r}")
    if hinted_sampling != "only" and n_rft < 2:
        raise ValueError(f"n_rft must be >= 2 (with n_rft={n_rft} every kept example is 'too easy')")


@dataclass
class RFTConfig(SFTConfig, GRMTrainingArguments):
    """``SFTConfig`` plus the GRM fields (:class:`~grm.training.common.GRMTrainingArguments`) and RFT sampling."""

    n_rft: int = field(default=3, metadata={"help": "Judgements sampled per example (the paper's N_RFT)."})
    hinted_sampling: str = field(
        default="off",
        metadata={
            "help": "off; fallback: one hinted sample for examples with no correct sample; only: one hinted "
            "sample per example instead of n_rft unhinted ones.",
            "choices": list(HINTED_SAMPLING),
        },
    )
    sample_backend: str = field(default="transformers", metadata={"help": "GRM backend used to sample (e.g. vllm)."})
    sample_backend_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Options for the sampling backend, e.g. {'dtype': 'bfloat16'} (JSON)."}
    )
    sample_temperature: float | None = field(
        default=None, metadata={"help": f"Sampling temperature (default {SAMPLING_TEMPERATURE}, grm's)."}
    )
    sample_max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "Generation budget per judgement (None: the model's saved one, grm_config.json, else 1024)."},
    )
    sample_chunk_size: int = field(default=64, metadata={"help": "Examples sent to the backend per call."})
    rule: str | None = field(
        default=None,
        metadata={"help": "A user rule 'module:function' of (judgement, example) -> bool: kept only if it passes."},
    )
    sample_replicas: int = field(
        default=0, metadata={"help": "0: sample in this process; N: on N GRM replicas on a Ray cluster (grm[ray])."}
    )
    sample_ray_address: str | None = field(
        default=None, metadata={"help": "Ray cluster for sample_replicas (e.g. auto; default: a local one)."}
    )
    sample_gpus_per_replica: float = field(default=0, metadata={"help": "GPUs each sampling replica holds."})
    rft_data_dir: str | None = field(
        default=None, metadata={"help": "Folder for records/sft/stats (default: OUTPUT_DIR/rft_data)."}
    )
    skip_training: bool = field(default=False, metadata={"help": "Only build the SFT set."})
    max_length: int | None = field(
        default=4096, metadata={"help": "Longest training sequence (GRM prompts with several responses are long)."}
    )
    completion_only_loss: bool | None = field(
        default=True, metadata={"help": "Loss on the judgement (assistant turn) only."}
    )

    def __post_init__(self) -> None:
        fit_to_device(self)
        super().__post_init__()
        if isinstance(self.sample_backend_kwargs, str):
            self.sample_backend_kwargs = json.loads(self.sample_backend_kwargs)
        _check_sampling(self.n_rft, self.hinted_sampling)
        if self.sample_chunk_size < 1:
            raise ValueError(f"sample_chunk_size must be >= 1, got {self.sample_chunk_size}")
        try:  # checked before any model loads
            self.scoring_options()
        except ValueError as e:
            raise ValueError(f"RFT sampling (n_rft, sample_temperature, sample_max_new_tokens): {e}") from None

    @property
    def data_dir(self) -> Path:
        return Path(self.rft_data_dir or Path(self.output_dir) / "rft_data")

    def scoring_options(self) -> ScoringOptions:
        """How RFT samples: ``n_rft`` judgements per example, seeded by ``seed``, at ``sample_temperature``."""
        return ScoringOptions(
            k=self.n_rft, seed=self.seed, temperature=self.sample_temperature, max_new_tokens=self.sample_max_new_tokens
        )


@dataclass
class RFTStats:
    """Rejection statistics of an RFT sampling run (``load``: :meth:`LoadStats.to_dict` of the data loading)."""

    examples: int = 0
    kept: int = 0
    too_easy: int = 0
    all_incorrect: int = 0
    judgements: int = 0
    correct: int = 0
    unparseable: int = 0
    hinted: int = 0
    hinted_correct: int = 0
    rule_rejected: int = 0
    sft_rows: int = 0
    load: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_sft_set(
    rm: GRM,
    examples: Iterable[Example],
    out_dir: str | Path,
    options: ScoringOptions | None = None,
    *,
    hinted_sampling: str = "off",
    rule: Rule | None = None,
    chunk_size: int = 64,
    load_stats: LoadStats | None = None,
    **overrides: Any,
) -> RFTStats:
    """Sample, judge and filter ``examples`` into ``out_dir`` (see the module docs); resumes a previous run.

    ``options`` (a :class:`~grm.ScoringOptions`, default ``k=3``; fields also by keyword, e.g. ``k=3, seed=0``) set
    the sampling: ``k`` is the paper's N_RFT, and each example is seeded by ``seed`` and its row position (so
    neither chunking nor resuming changes its samples); ``temperature`` None samples at grm's 0.5. A hinted sample
    is one more judgement of the example with its ``hint`` set, through the same options (k=1), keyed
    ``hint:<index>``. With a ``rule`` a judgement is kept only if it also passes it. ``examples`` must come in the
    same order on every run (the row position is the resume key). Returns the statistics over all records, which
    are also written to ``stats.json``.
    """
    options = resolve_options(options, overrides, default=ScoringOptions(k=3))
    if options.in_rounds:
        raise ValueError("RFT keeps or drops each of the k judgements it samples; adaptive or a budget draws fewer")
    _check_sampling(options.k, hinted_sampling)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, sft = out / "records.jsonl", out / "sft.jsonl"
    done = load_finished(records, "index", keep=lambda row: row["id"])
    _keep_recorded_rows(sft, set(done))
    if done:
        logger.info("%s: %d examples already sampled; resuming", records, len(done))
    sampler = _Sampler(rm, options, hinted_sampling, rule)
    with (
        JsonlWriter(records) as record_writer,
        JsonlWriter(sft) as sft_writer,
        progress_bar(desc="rft", unit="ex", leave=True) as bar,
    ):
        chunk: list[tuple[int, Example]] = []
        for index, example in enumerate(examples):
            if index in done:
                if done[index] != example.id:
                    raise ValueError(
                        f"{records}: row {index} was sampled for example id {done[index]!r} but the data now has "
                        f"{example.id!r} there; use a fresh rft_data_dir for different data"
                    )
                bar.update(1)
                continue
            chunk.append((index, example))
            if len(chunk) >= chunk_size:
                sampler.run(chunk, record_writer, sft_writer)
                bar.update(len(chunk))
                chunk = []
        sampler.run(chunk, record_writer, sft_writer)
        bar.update(len(chunk))
    stats = summarize(records, load_stats)
    (out / "stats.json").write_text(json.dumps(stats.to_dict(), indent=2) + "\n", encoding="utf-8")
    logger.info("RFT sampling: %s", stats.to_dict())
    return stats


def summarize(records: str | Path, load_stats: LoadStats | None = None) -> RFTStats:
    """Statistics over a ``records.jsonl`` file (read as a stream)."""
    stats = RFTStats(load=load_stats.to_dict() if load_stats is not None else {})
    if not Path(records).exists():
        return stats
    for _, row, error in read_rows(records):
        if row is None:
            raise ValueError(f"{records}: {error}")
        stats.examples += 1
        setattr(stats, row["status"], getattr(stats, row["status"]) + 1)
        for s in row["samples"]:
            if s["hinted"]:
                stats.hinted += 1
                stats.hinted_correct += s["correct"]
            else:
                stats.judgements += 1
                stats.correct += s["correct"]
                stats.unparseable += s["scores"] is None
            stats.rule_rejected += s["correct"] and s.get("rule") is False
            stats.sft_rows += s["kept"]
    return stats


def _keep_recorded_rows(sft: Path, recorded: set[int]) -> None:
    """Drop SFT rows of examples without a record (written just before an interruption; they are resampled)."""
    if not sft.exists():
        return
    tmp = sft.with_suffix(".jsonl.tmp")
    dropped = 0
    with open(sft, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as dst:
        for line in src:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut off by the interruption
                dropped += 1
                continue
            if row.get("index") in recorded:
                dst.write(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    os.replace(tmp, sft)
    if dropped:
        logger.info("%s: dropped %d rows of examples left unfinished by an interrupted run", sft, dropped)


@dataclass
class _Sample:
    """A sampled judgement, whether it is correct by SPCT's rule, drawn with a hint, and passes the user rule (None:
    no rule); RFT keeps it when it is ``accepted``."""

    judgement: Judgement
    correct: bool
    hinted: bool
    rule: bool | None

    @property
    def accepted(self) -> bool:
        return self.correct and self.rule is not False


class _Sampler:
    """Samples one chunk of examples and writes its SFT rows, then its records."""

    def __init__(self, rm: GRM, options: ScoringOptions, hinted: str, rule: Rule | None) -> None:
        self.rm, self.options, self.hinted, self.rule = rm, options, hinted, rule

    def run(self, chunk: Sequence[tuple[int, Example]], record_writer: JsonlWriter, sft_writer: JsonlWriter) -> None:
        if not chunk:
            return
        samples: list[list[_Sample]] = [[] for _ in chunk]
        if self.hinted != "only":
            keys = [index for index, _ in chunk]  # each example seeded by its index: chunks and resuming alike
            rewards = self.rm.score_batch([e for _, e in chunk], self.options, keys=keys)
            for s, (_, e), r in zip(samples, chunk, rewards):
                s.extend(self._judged(j, e, hinted=False) for j in r.judgements)
        # "only": every example (no unhinted samples); "fallback": those with no accepted sample
        need_hint = [i for i, s in enumerate(samples) if self.hinted != "off" and not any(x.accepted for x in s)]
        for i, judgement in zip(need_hint, self._hinted([chunk[i] for i in need_hint])):
            samples[i].append(self._judged(judgement, chunk[i][1], hinted=True))
        for (index, example), s in zip(chunk, samples):
            self._write(index, example, s, record_writer, sft_writer)

    def _judged(self, judgement: Judgement, example: Example, *, hinted: bool) -> _Sample:
        rule = None if self.rule is None else passes(self.rule, judgement, example)
        return _Sample(judgement, is_correct(judgement.scores, example.truth), hinted, rule)

    def _hinted(self, chunk: Sequence[tuple[int, Example]]) -> list[Judgement]:
        """One judgement per example from its prompt with a hint (the best response, or a lone response's true
        score), drawn by the scoring plan with the options' settings (k=1, sampled at grm's 0.5 unless the
        options set a temperature), each example keyed ``hint:<index>``."""
        if not chunk:
            return []
        t = self.options.temperature
        options = replace(self.options, k=1, temperature=SAMPLING_TEMPERATURE if t is None else t)
        items = [replace(e, hint=best_index(e.truth) if len(e.truth) > 1 else int(e.truth[0])) for _, e in chunk]
        rewards = self.rm.score_batch(items, options, keys=[f"hint:{index}" for index, _ in chunk])
        return [r.judgements[0] for r in rewards]

    def _write(
        self,
        index: int,
        example: Example,
        samples: list[_Sample],
        record_writer: JsonlWriter,
        sft_writer: JsonlWriter,
    ) -> None:
        unhinted = [x.accepted for x in samples if not x.hinted]
        too_easy = bool(unhinted) and all(unhinted)
        kept = [x.accepted and not too_easy for x in samples]
        for number, (x, keep) in enumerate(zip(samples, kept)):
            j, hinted = x.judgement, x.hinted
            if keep:
                prompt = self.rm.build_prompt(
                    example.query,
                    [example.responses[p] for p in j.order],  # type: ignore[union-attr]
                    principles=example.principles,
                    reference=example.reference,
                )
                sft_writer.write(
                    {
                        "index": index,
                        "id": example.id,
                        "sample": number,
                        "hinted": hinted,
                        "prompt": prompt,
                        "completion": [{"role": "assistant", "content": j.text}],
                    }
                )
        status = "too_easy" if too_easy else "kept" if any(kept) else "all_incorrect"
        record_writer.write(
            {
                "index": index,
                "id": example.id,
                "status": status,
                "truth": example.truth,
                "samples": [
                    {"hinted": x.hinted, "correct": x.correct, "rule": x.rule, "kept": k, **x.judgement.to_dict()}
                    for x, k in zip(samples, kept)
                ],
            }
        )


def make_sft_trainer(config: RFTConfig, sft_path: str | Path):
    """TRL's ``SFTTrainer`` for ``config.model_name_or_path`` on an SFT set (loss on the assistant turn)."""
    from datasets import load_dataset
    from trl import SFTTrainer

    sft_path = Path(sft_path)
    if not sft_path.exists() or sft_path.stat().st_size == 0:
        raise ValueError(f"{sft_path}: the SFT set is empty (every example was rejected; see stats.json beside it)")
    dataset = load_dataset("json", data_files=str(sft_path), split="train").select_columns(["prompt", "completion"])
    return SFTTrainer(
        model=config.model_name_or_path, args=config, train_dataset=dataset, peft_config=lora_config(config)
    )


def train_sft(config: RFTConfig, sft_path: str | Path):
    """Train (resuming per ``resume_from_checkpoint``), save the model to ``output_dir``, return the trainer."""
    trainer = make_sft_trainer(config, sft_path)
    trainer.train(resume_from_checkpoint=resume_checkpoint(config.output_dir, config.resume_from_checkpoint))
    trainer.save_model(config.output_dir)
    if trainer.is_world_process_zero():
        save_prompting(config, config.sample_max_new_tokens)
        log_saved("fine-tuned GRM", config.output_dir)
    return trainer


def run_rft(config: RFTConfig) -> RFTStats:
    """Build the SFT set (unless ``stats.json`` says it is complete), then train on it (unless ``skip_training``)."""
    check_common(config)
    data_dir = config.data_dir
    stats_path = data_dir / "stats.json"
    if stats_path.exists():
        logger.info("%s exists: sampling is complete (delete it to sample more); training on it", stats_path)
        stats = RFTStats(**json.loads(stats_path.read_text(encoding="utf-8")))
    else:
        from accelerate import PartialState

        if PartialState().num_processes > 1:
            raise ValueError(
                f"RFT sampling runs in one process: build the SFT set first (skip_training: true, no accelerate "
                f"launch), then launch training; {stats_path} is written when sampling is complete"
            )
        grm_kwargs = {
            "template": config.template,  # None: the model's saved template, else default (as resolve_template)
            "max_new_tokens": config.sample_max_new_tokens,
            **(config.sample_backend_kwargs or {}),
        }
        if config.sample_replicas:  # the engine is N replicas on Ray; rm.backend.close() below releases them
            from grm.distributed import Replica, ray_grm

            replica = Replica(
                config.model_name_or_path, config.sample_backend, grm_kwargs, num_gpus=config.sample_gpus_per_replica
            )
            rm, _ = ray_grm(replica, replicas=config.sample_replicas, address=config.sample_ray_address)
        else:
            rm = GRM.from_pretrained(config.model_name_or_path, config.sample_backend, **grm_kwargs)
        load_stats = LoadStats()
        examples = iter_examples(
            config.data_path,
            format=config.data_format,
            seed=config.seed,
            score_range=rm.score_range,
            split=config.data_split,
            stats=load_stats,
        )
        stats = build_sft_set(
            rm,
            examples,
            data_dir,
            config.scoring_options(),
            hinted_sampling=config.hinted_sampling,
            rule=load_rule(config.rule),
            chunk_size=config.sample_chunk_size,
            load_stats=load_stats,
        )
        close = getattr(rm.backend, "close", None)
        if callable(close):  # e.g. vLLM's worker processes
            close()
        del rm, examples
        gc.collect()  # free the sampling engine before training
    if config.skip_training:
        log_saved("RFT set (skip_training: no model trained)", data_dir)
    else:
        train_sft(config, data_dir / "sft.jsonl")
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """``grm train rft --config FILE.yaml [-- TRL flags]`` (or ``python -m grm.training.rft --config ...``)."""
    run_rft(parse_config(RFTConfig, argv, prog="grm train rft"))
    return 0


if __name__ == "__main__":
    setup_console()
    sys.exit(main())
