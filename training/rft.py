"""Rejective fine-tuning (SPCT's cold start): sample judgements, keep the correct ones, SFT on them.

For each labelled example the GRM (any backend; vLLM for speed) samples ``n_rft`` judgements, each with its
own shuffled response order. Incorrect judgements (by :func:`grm.training.is_correct`) are dropped, and so are
examples whose ``n_rft`` judgements were all correct (too easy). Optional **hinted sampling** draws one judgement
from a prompt that names the best response (or, for one response, its true score) and keeps it if correct:
``hinted_sampling="fallback"`` does so for examples none of whose ``n_rft`` samples was correct, ``"only"``
instead of unhinted sampling. A hinted judgement is trained on the prompt **without** the hint, so the model
learns to reach the answer unaided.

Files in the RFT data folder (``rft_data_dir``, default ``OUTPUT_DIR/rft_data``):

- ``records.jsonl``: one row per sampled example (``index``, ``id``, ``status``: kept / too_easy /
  all_incorrect, and every sampled judgement with its order, scores, correctness and text); appended as it goes,
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from trl import SFTConfig

from grm.backends import GenerationRequest, Sampling
from grm.jsonl import JsonlWriter, load_finished, read_rows
from grm.model import GRM
from grm.rule import best_index, is_correct
from grm.scoring import SAMPLING_TEMPERATURE, read_judgement
from grm.seeding import random_seed, seeded_rng
from grm.training.common import (
    GRMTrainingArguments,
    check_common,
    lora_config,
    parse_config,
    resume_checkpoint,
    save_prompting,
)
from grm.training.data import LoadStats, iter_examples
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
    sample_max_new_tokens: int = field(default=1024, metadata={"help": "Generation budget per judgement."})
    sample_chunk_size: int = field(default=64, metadata={"help": "Examples sent to the backend per call."})
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
        super().__post_init__()
        if isinstance(self.sample_backend_kwargs, str):
            self.sample_backend_kwargs = json.loads(self.sample_backend_kwargs)
        _check_sampling(self.n_rft, self.hinted_sampling)
        if self.sample_chunk_size < 1:
            raise ValueError(f"sample_chunk_size must be >= 1, got {self.sample_chunk_size}")

    @property
    def data_dir(self) -> Path:
        return Path(self.rft_data_dir or Path(self.output_dir) / "rft_data")


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
    sft_rows: int = 0
    load: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_sft_set(
    rm: GRM,
    examples: Iterable[Example],
    out_dir: str | Path,
    *,
    n_rft: int = 3,
    hinted_sampling: str = "off",
    seed: int = 0,
    temperature: float | None = None,
    max_new_tokens: int | None = None,
    chunk_size: int = 64,
    load_stats: LoadStats | None = None,
) -> RFTStats:
    """Sample, judge and filter ``examples`` into ``out_dir`` (see the module docs); resumes a previous run.

    ``examples`` must come in the same order on every run (the row position is the resume key). Returns the
    statistics over all records, which are also written to ``stats.json``.
    """
    _check_sampling(n_rft, hinted_sampling)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, sft = out / "records.jsonl", out / "sft.jsonl"
    done = load_finished(records, "index", keep=lambda row: row["id"])
    _keep_recorded_rows(sft, set(done))
    if done:
        logger.info("%s: %d examples already sampled; resuming", records, len(done))
    sampler = _Sampler(rm, n_rft, hinted_sampling, seed, temperature, max_new_tokens or rm.max_new_tokens)
    with JsonlWriter(records) as record_writer, JsonlWriter(sft) as sft_writer, tqdm(desc="rft", unit="ex") as bar:
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


class _Sampler:
    """Samples one chunk of examples and writes its SFT rows, then its records."""

    def __init__(
        self, rm: GRM, n_rft: int, hinted: str, seed: int, temperature: float | None, max_new_tokens: int
    ) -> None:
        self.rm, self.n_rft, self.hinted, self.seed = rm, n_rft, hinted, seed
        self.temperature, self.max_new_tokens = temperature, max_new_tokens

    def run(self, chunk: Sequence[tuple[int, Example]], record_writer: JsonlWriter, sft_writer: JsonlWriter) -> None:
        if not chunk:
            return
        samples: list[list[tuple[Judgement, bool, bool]]] = [[] for _ in chunk]  # (judgement, correct, hinted)
        if self.hinted != "only":
            rewards = self.rm.score_batch(
                [e for _, e in chunk],
                keys=[index for index, _ in chunk],  # each example seeded by its index: chunks and resuming alike
                k=self.n_rft,
                seed=self.seed,
                temperature=self.temperature,
                max_new_tokens=self.max_new_tokens,
            )
            for s, (_, e), r in zip(samples, chunk, rewards):
                s.extend((j, is_correct(j.scores, e.truth), False) for j in r.judgements)
        # "only": every example (no unhinted samples); "fallback": those with no correct sample
        need_hint = [i for i, s in enumerate(samples) if self.hinted != "off" and not any(c for _, c, _ in s)]
        for i, judgement in zip(need_hint, self._hinted([chunk[i] for i in need_hint])):
            samples[i].append((judgement, is_correct(judgement.scores, chunk[i][1].truth), True))
        for (index, example), s in zip(chunk, samples):
            self._write(index, example, s, record_writer, sft_writer)

    def _hinted(self, chunk: Sequence[tuple[int, Example]]) -> list[Judgement]:
        """One judgement per example from a prompt with a hint, in a fresh seeded response order."""
        if not chunk:
            return []
        orders, requests = [], []
        temperature = SAMPLING_TEMPERATURE if self.temperature is None else self.temperature
        for index, e in chunk:
            rng = seeded_rng(self.seed, index, "hint")
            order = list(range(len(e.responses)))
            rng.shuffle(order)
            hint = order.index(best_index(e.truth)) if len(order) > 1 else int(e.truth[0])
            messages = self.rm.build_prompt(
                e.query, [e.responses[p] for p in order], principles=e.principles, reference=e.reference, hint=hint
            )
            sampling = Sampling(temperature, self.max_new_tokens, seed=random_seed(rng) if temperature else None)
            orders.append(order)
            requests.append(GenerationRequest(messages, 1, sampling))
        outputs = self.rm.backend.generate(requests)
        if len(outputs) != len(requests) or any(len(o) != 1 for o in outputs):
            raise RuntimeError(f"backend returned {[len(o) for o in outputs]} completions for {len(requests)} x 1")
        return [read_judgement(c, order, self.rm.score_range) for order, (c,) in zip(orders, outputs)]

    def _write(
        self,
        index: int,
        example: Example,
        samples: list[tuple[Judgement, bool, bool]],
        record_writer: JsonlWriter,
        sft_writer: JsonlWriter,
    ) -> None:
        unhinted = [c for _, c, h in samples if not h]
        too_easy = bool(unhinted) and all(unhinted)
        kept = [c and not too_easy for _, c, _ in samples]
        for number, ((j, _, hinted), keep) in enumerate(zip(samples, kept)):
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
                    {"hinted": h, "correct": c, "kept": k, **j.to_dict()} for (j, c, h), k in zip(samples, kept)
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
            n_rft=config.n_rft,
            hinted_sampling=config.hinted_sampling,
            seed=config.seed,
            temperature=config.sample_temperature,
            max_new_tokens=config.sample_max_new_tokens,
            chunk_size=config.sample_chunk_size,
            load_stats=load_stats,
        )
        close = getattr(rm.backend, "close", None)
        if callable(close):  # e.g. vLLM's worker processes
            close()
        del rm, examples
        gc.collect()  # free the sampling engine before training
    if not config.skip_training:
        train_sft(config, data_dir / "sft.jsonl")
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """``grm train rft --config FILE.yaml [-- TRL flags]`` (or ``python -m grm.training.rft --config ...``)."""
    run_rft(parse_config(RFTConfig, argv, prog="grm train rft"))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
