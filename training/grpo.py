"""Rule-based online RL (SPCT): TRL's ``GRPOTrainer`` with :func:`grm.training.spct_reward`.

Each labelled example becomes one GRPO prompt: the GRM prompt of its responses, in the order the loader's
shuffle gave them, with a ``truth`` column in that same order. The policy (the GRM being trained) writes a group
of ``num_generations`` judgements per prompt; each gets +1 if correct by SPCT's rule and -1 otherwise (no format
reward). Defaults follow the paper: group size 4, KL coefficient ``beta`` 0.08. TRL's generation options,
vLLM included (``use_vllm``, ``vllm_mode``, ``vllm_server_base_url``...), pass straight through.

With a user ``rule`` (:mod:`grm.training.rules`) a second reward function adds ``rule_weight`` for a judgement
that passes it and subtracts it for one that fails. With ``curve_every`` the run records learning curves
(:mod:`grm.training.curves`): every ``curve_every`` steps the mean rule reward on held-out examples
(``curve_data``) and on training prompts, and the held-out accuracy (greedy, Voting@1, Voting@``curve_k``), in
``OUTPUT_DIR/curves.jsonl``.

The model to start from may be a full model or a LoRA adapter folder (RFT's with ``use_peft``): an adapter is
loaded on its base model; with ``use_peft`` the same adapter trains on, else it is merged and every weight trains.

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

from trl import GRPOConfig

from grm.jsonl import JsonlWriter, dumps
from grm.progress import progress_bar, setup_console
from grm.training.common import (
    GRMTrainingArguments,
    check_common,
    fit_to_device,
    log_saved,
    lora_config,
    parse_config,
    resolve_template,
    resume_checkpoint,
    save_prompting,
)
from grm.training.data import LoadStats, iter_examples, load_examples
from grm.training.rewards import spct_reward
from grm.training.rules import RuleReward, load_rule

logger = logging.getLogger(__name__)


@dataclass
class SPCTGRPOConfig(GRPOConfig, GRMTrainingArguments):
    """``GRPOConfig`` with the paper's defaults plus the GRM fields (see
    :class:`~grm.training.common.GRMTrainingArguments`)."""

    num_generations: int | None = field(default=4, metadata={"help": "Judgements per prompt (GRPO group size)."})
    beta: float = field(default=0.08, metadata={"help": "KL coefficient (the paper uses 0.08 for its 27B GRM)."})
    max_completion_length: int | None = field(
        default=None,
        metadata={"help": "Generation budget per judgement (None: the model's saved one, grm_config.json, else 1024)."},
    )
    rule: str | None = field(
        default=None,
        metadata={"help": "A user rule 'module:function' of (judgement, example) -> bool (grm.training.rules)."},
    )
    rule_weight: float = field(default=1.0, metadata={"help": "Reward added when the rule passes, taken when not."})
    curve_every: int = field(default=0, metadata={"help": "Steps between learning-curve points (0: no curves)."})
    curve_data: str | None = field(
        default=None, metadata={"help": "Held-out labelled examples for the curves (any grm.training.data format)."}
    )
    curve_examples: int = field(default=200, metadata={"help": "Held-out examples measured (the first N)."})
    curve_train_examples: int = field(default=100, metadata={"help": "Training examples measured (the first N)."})
    curve_k: int = field(default=8, metadata={"help": "Judgements sampled per example for the curves."})

    def __post_init__(self) -> None:
        fit_to_device(self)
        super().__post_init__()
        if self.curve_every < 0 or self.curve_k < 1:
            raise ValueError(f"need curve_every >= 0 and curve_k >= 1, got {self.curve_every}, {self.curve_k}")
        if self.curve_every and not self.curve_data:
            raise ValueError("curve_every needs curve_data: the held-out examples the curves are measured on")

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
        for e in progress_bar(examples, desc="grpo prompts", unit="ex"):
            prompt = template.render(
                e.query, e.responses, score_range=score_range, principles=e.principles, reference=e.reference
            )
            row = {"prompt": prompt, "truth": [float(t) for t in e.truth], "score_range": list(score_range), "id": e.id}
            writer.write(row | {"example": dumps(e.to_dict())})  # for a rule: the example as the prompt shows it
    tmp.replace(path)
    (config.data_dir / "load_stats.json").write_text(json.dumps(stats.to_dict(), indent=2) + "\n", encoding="utf-8")
    if not stats.kept:
        raise ValueError(f"{config.data_path}: no usable example ({stats.to_dict()})")
    logger.info("GRPO prompts: %s", stats.to_dict())
    return path, stats


def reward_functions(config: SPCTGRPOConfig) -> list[Callable[..., Any]]:
    """SPCT's +1/-1 reward, plus the user rule's term when ``rule`` is set."""
    rule = load_rule(config.rule)
    return [spct_reward] if rule is None else [spct_reward, RuleReward(rule, config.rule_weight)]


def load_policy(config: SPCTGRPOConfig) -> tuple[Any, Any]:
    """The model GRPO starts from and the LoRA config to add: the path itself for a full model; for a LoRA adapter
    folder, the adapter on its base model, trainable with ``use_peft`` (no new adapter), else merged into it."""
    adapter = Path(config.model_name_or_path or "", "adapter_config.json")
    if not adapter.is_file():
        return config.model_name_or_path, lora_config(config)
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(config.model_name_or_path, is_trainable=config.use_peft)
    if config.use_peft:
        logger.info("%s is a LoRA adapter: training it on, on its base model", config.model_name_or_path)
        return model, None
    logger.info("%s is a LoRA adapter: merged into its base model; every weight trains", config.model_name_or_path)
    return model.merge_and_unload(), None


def curve_callback(config: SPCTGRPOConfig):
    """The :class:`~grm.training.curves.CurveCallback` of ``curve_*`` (None when ``curve_every`` is 0)."""
    if not config.curve_every:
        return None
    from transformers import AutoTokenizer

    from grm.backends.transformers import TransformersBackend
    from grm.model import GRM
    from grm.training.curves import CurveCallback

    template = resolve_template(config)
    heldout, _ = load_examples(config.curve_data, seed=config.seed, score_range=template.score_range)
    train = []
    if config.curve_train_examples:  # the examples GRPO trains on, loaded (and shuffled) as its prompts are
        train, _ = load_examples(config.data_path, seed=config.seed, score_range=template.score_range)
    tokenizer = AutoTokenizer.from_pretrained(config.model_name_or_path)  # its own copy: generation pads left
    budget = config.max_completion_length or 1024

    def make_grm(model: Any) -> GRM:
        backend = TransformersBackend(model, tokenizer, batch_size=64, progress=False)
        return GRM(backend, template, max_new_tokens=budget)

    return CurveCallback(
        Path(config.output_dir) / "curves.jsonl",
        make_grm,
        heldout[: config.curve_examples],
        train[: config.curve_train_examples],
        every=config.curve_every,
        k=config.curve_k,
        seed=config.seed,
        rule=load_rule(config.rule),
    )


def make_trainer(config: SPCTGRPOConfig, reward_funcs: Callable[..., Any] | Sequence[Any] | None = None):
    """A ``GRPOTrainer`` for the config's GRM and data, rewarded by ``reward_funcs`` (default:
    :func:`reward_functions`), with the learning-curve callback when ``curve_every`` is set."""
    from accelerate import PartialState
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    from grm.assets import read_grm_config

    check_common(config)
    if config.max_completion_length is None:
        config.max_completion_length = read_grm_config(config.model_name_or_path).get("max_new_tokens") or 1024
    state = PartialState()
    with state.main_process_first():  # one process writes the prompts, then every process reads them
        if state.is_main_process:
            write_prompts(config)
        dataset = load_dataset("json", data_files=str(config.data_dir / "prompts.jsonl"), split="train")
    model, peft_config = load_policy(config)
    callback = curve_callback(config) if state.is_main_process else None
    return GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs if reward_funcs is not None else reward_functions(config),
        args=config,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(config.model_name_or_path, padding_side="left"),
        peft_config=peft_config,
        callbacks=[callback] if callback is not None else None,
    )


def run_grpo(config: SPCTGRPOConfig):
    """Train (resuming per ``resume_from_checkpoint``), save the model to ``output_dir``, return the trainer."""
    trainer = make_trainer(config)
    trainer.train(resume_from_checkpoint=resume_checkpoint(config.output_dir, config.resume_from_checkpoint))
    trainer.save_model(config.output_dir)
    if trainer.is_world_process_zero():
        save_prompting(config, config.max_completion_length)
        log_saved("GRPO-trained GRM", config.output_dir)
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    """``grm train grpo --config FILE.yaml [-- TRL flags]`` (or ``python -m grm.training.grpo --config ...``)."""
    run_grpo(parse_config(SPCTGRPOConfig, argv, prog="grm train grpo"))
    return 0


if __name__ == "__main__":
    setup_console()
    sys.exit(main())
