"""Rule-based online RL (SPCT): TRL's ``GRPOTrainer`` with :func:`grm.training.spct_reward`.

Each labelled example becomes one GRPO prompt: the GRM prompt of its responses, in the order the loader's
shuffle gave them, with a ``truth`` column in that same order. The policy (the GRM being trained) writes a group
of ``num_generations`` judgements per prompt; each gets +1 if correct by SPCT's rule and -1 otherwise (no format
reward). Defaults follow the paper: group size 4, KL coefficient ``beta`` 0.08. TRL's generation options,
vLLM included (``use_vllm``, ``vllm_mode``, ``vllm_server_base_url``...), pass straight through.

The prompts are written to ``OUTPUT_DIR/grpo_data/prompts.jsonl`` (rebuilt each run: it is cheap and
deterministic for a given data file and seed), with the loading statistics in ``load_stats.json``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from trl import GRPOConfig

from grm.jsonl import JsonlWriter
from grm.training.common import (
    GRMTrainingArguments,
    check_common,
    lora_config,
    parse_config,
    resolve_template,
    resume_checkpoint,
    save_prompting,
)
from grm.training.data import LoadStats, iter_examples
from grm.training.rewards import spct_reward

logger = logging.getLogger(__name__)


@dataclass
class SPCTGRPOConfig(GRPOConfig, GRMTrainingArguments):
    """``GRPOConfig`` with the paper's defaults plus the GRM fields (see
    :class:`~grm.training.common.GRMTrainingArguments`)."""

    num_generations: int | None = field(default=4, metadata={"help": "Judgements per prompt (GRPO group size)."})
    beta: float = field(default=0.08, metadata={"help": "KL coefficient (the paper uses 0.08 for its 27B GRM)."})
    max_completion_length: int | None = field(default=1024, metadata={"help": "Generation budget per judgement."})

    @property
    def data_dir(self) -> Path:
        return Path(self.output_dir) / "grpo_data"


def write_prompts(config: SPCTGRPOConfig) -> tuple[Path, LoadStats]:
    """Render every usable example of ``config.data_path`` to a GRPO row (``prompt``: chat messages, ``truth`` in
    the shown order, ``score_range``, ``id``) in ``prompts.jsonl``; return its path and the loading statistics."""
    template = resolve_template(config)
    score_range = template.score_range
    stats = LoadStats()
    examples = iter_examples(
        config.data_path,
        format=config.data_format,
        seed=config.seed,
        score_range=score_range,
        split=config.data_split,
        stats=stats,
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    path = config.data_dir / "prompts.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.unlink(missing_ok=True)
    with JsonlWriter(tmp) as writer:
        for e in tqdm(examples, desc="grpo prompts", unit="ex"):
            prompt = template.render(
                e.query, e.responses, score_range=score_range, principles=e.principles, reference=e.reference
            )
            writer.write(
                {"prompt": prompt, "truth": [float(t) for t in e.truth], "score_range": list(score_range), "id": e.id}
            )
    tmp.replace(path)
    (config.data_dir / "load_stats.json").write_text(json.dumps(stats.to_dict(), indent=2) + "\n", encoding="utf-8")
    if not stats.kept:
        raise ValueError(f"{config.data_path}: no usable example ({stats.to_dict()})")
    logger.info("GRPO prompts: %s", stats.to_dict())
    return path, stats


def make_trainer(config: SPCTGRPOConfig, reward_funcs: Callable[..., Any] | Sequence[Any] | None = None):
    """A ``GRPOTrainer`` for the config's GRM and data, rewarded by ``reward_funcs`` (default: spct_reward)."""
    from accelerate import PartialState
    from datasets import load_dataset
    from trl import GRPOTrainer

    check_common(config)
    state = PartialState()
    with state.main_process_first():  # one process writes the prompts, then every process reads them
        if state.is_main_process:
            write_prompts(config)
        dataset = load_dataset("json", data_files=str(config.data_dir / "prompts.jsonl"), split="train")
    return GRPOTrainer(
        model=config.model_name_or_path,
        reward_funcs=reward_funcs if reward_funcs is not None else spct_reward,
        args=config,
        train_dataset=dataset,
        peft_config=lora_config(config),
    )


def run_grpo(config: SPCTGRPOConfig):
    """Train (resuming per ``resume_from_checkpoint``), save the model to ``output_dir``, return the trainer."""
    trainer = make_trainer(config)
    trainer.train(resume_from_checkpoint=resume_checkpoint(config.output_dir, config.resume_from_checkpoint))
    trainer.save_model(config.output_dir)
    if trainer.is_world_process_zero():
        save_prompting(config, config.max_completion_length)
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    """``grm train grpo --config FILE.yaml [-- TRL flags]`` (or ``python -m grm.training.grpo --config ...``)."""
    run_grpo(parse_config(SPCTGRPOConfig, argv, prog="grm train grpo"))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
