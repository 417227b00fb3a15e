"""What the TRL-based GRM trainers (``rft``, ``grpo``) share: config fields, LoRA, resuming, config parsing, and
the prompting settings (``grm_config.json``) that travel from the model trained to the model saved."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grm.training.data import FORMATS

logger = logging.getLogger(__name__)

RESUME_LATEST = ("auto", "true", "last")
"""``resume_from_checkpoint`` values meaning the latest ``checkpoint-*`` in ``output_dir``."""


@dataclass
class GRMTrainingArguments:
    """Fields every GRM trainer config adds to its TRL config (mixed into ``RFTConfig`` and ``SPCTGRPOConfig``)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "Local path or hub id of the GRM to train."})
    data_path: str | None = field(
        default=None,
        metadata={"help": "Labelled data: a .jsonl/.json/.parquet/.csv file, a dataset folder or hub name."},
    )
    data_format: str = field(
        default="auto",
        metadata={
            "help": "Row format (see grm.training.data).",
            "choices": ["auto", "examples", "best_of_n", "ratings", "pairs", "labelled"],
        },
    )
    data_split: str = field(default="train", metadata={"help": "Split to read from a dataset folder or hub name."})
    template: str | None = field(
        default=None,
        metadata={
            "help": "Built-in GRM template name (default, correctness, synthetic) or a .j2 file; unset: the one "
            "saved with the model (grm_config.json), else default."
        },
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules to adapt (default: all linear layers but the output head)."}
    )


def fit_to_device(config: Any) -> None:
    """Turn off what a config asks of a GPU when this machine has none (``bf16`` without a bf16 GPU, TRL's vLLM
    generation without CUDA), logging each, so that one config runs on a GPU and, as written, on a CPU. Called
    before the TRL config checks its fields."""
    import torch

    if getattr(config, "bf16", False) and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        logger.info("bf16: no GPU with bf16 here; training in float32")
        config.bf16 = False
    if getattr(config, "use_vllm", False) and not torch.cuda.is_available():
        logger.info("use_vllm: TRL's vLLM generation needs a GPU; generating with transformers")
        config.use_vllm = False


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a JSONL file (ValueError naming the file and line for one that cannot be read)."""
    from grm.jsonl import read_rows

    rows = []
    for _, row, error in read_rows(path):
        if row is None:
            raise ValueError(f"{path}: {error}")
        rows.append(row)
    return rows


def log_saved(what: str, folder: str | Path) -> None:
    """The line every trainer ends with: what it trained and where it saved it."""
    logger.info("%s saved to %s", what, folder)


def check_common(config: Any) -> None:
    """Raise ValueError for a config whose GRM fields cannot work."""
    for name in ("model_name_or_path", "data_path", "output_dir"):
        if not getattr(config, name, None):
            raise ValueError(f"{type(config).__name__}.{name} is required (set it in the YAML config or as --{name})")
    if config.data_format != "auto" and config.data_format not in FORMATS:
        raise ValueError(f"unknown data_format {config.data_format!r}; expected 'auto' or one of {', '.join(FORMATS)}")
    if config.lora_r < 1:
        raise ValueError(f"lora_r must be >= 1, got {config.lora_r}")


def lora_config(config: GRMTrainingArguments):
    """A peft ``LoraConfig`` for a causal LM when ``use_peft`` is set, else None (full fine-tuning)."""
    if not config.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules or "all-linear",
        task_type="CAUSAL_LM",
    )


def resolve_template(config: GRMTrainingArguments):
    """The config's :class:`~grm.prompts.PromptTemplate`; unset, the one saved with the model, else ``default``."""
    from grm.assets import read_grm_config
    from grm.prompts import PromptTemplate

    if config.template is not None:
        return PromptTemplate.load(config.template)
    return PromptTemplate.load(read_grm_config(config.model_name_or_path).get("template", "default"))


def save_prompting(config: GRMTrainingArguments, budget: int | None) -> None:
    """Write ``grm_config.json`` and the template into ``config.output_dir``, so the trained model loads with the
    prompt it was trained on; ``max_new_tokens`` is the source model's saved one, else ``budget`` (else 1024)."""
    from grm.assets import read_grm_config, write_grm_config

    template = resolve_template(config)
    saved = read_grm_config(config.model_name_or_path)
    max_new_tokens = saved.get("max_new_tokens") or budget or 1024
    write_grm_config(
        config.output_dir, template.source, score_range=template.score_range, max_new_tokens=max_new_tokens
    )


def resume_checkpoint(output_dir: str | Path, value: str | None) -> str | None:
    """The checkpoint to resume from: ``value`` if it is a folder; the latest ``checkpoint-*`` in ``output_dir``
    for ``auto`` (None if there is none yet: a fresh start), ``true`` or ``last`` (an error if there is none)."""
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    if str(value).lower() in RESUME_LATEST:
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
        if last is None and str(value).lower() != "auto":
            raise ValueError(f"resume_from_checkpoint={value!r}, but {output_dir} holds no checkpoint-* folder")
        if last is not None:
            logger.info("resuming from %s", last)
            _warn_if_finished(last)
        return last
    if not Path(value).is_dir():
        raise ValueError(f"resume_from_checkpoint={value!r} is not a checkpoint folder (nor one of {RESUME_LATEST})")
    return str(value)


def _warn_if_finished(checkpoint: str) -> None:
    """Warn that ``checkpoint`` ended its run: resuming it trains only what a longer schedule adds."""
    state_file = Path(checkpoint) / "trainer_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
    step, total = state.get("global_step", 0), state.get("max_steps", 0)
    if total and step >= total:
        logger.warning(
            "%s is the end of a finished run (step %d of %d): resuming it trains only the steps a longer schedule "
            "adds; for a fresh run use a new output_dir or resume_from_checkpoint: false",
            checkpoint,
            step,
            total,
        )


def parse_config(config_class: type, argv: Sequence[str] | None = None, prog: str | None = None):
    """Build ``config_class`` from ``--config FILE.yaml`` plus TRL/transformers flags overriding it."""
    from trl import TrlParser

    argv = list(argv) if argv is not None else sys.argv[1:]
    _check_ascii_numbers(argv)
    parser = TrlParser((config_class,), prog=prog)
    (config,) = parser.parse_args_and_config(argv)
    return config


def _check_ascii_numbers(argv: Sequence[str]) -> None:
    """Refuse a number written in other digits than ASCII (``٣``, ``７``, ``𝟕``), which Python's ``int`` and
    ``float`` would read, in a flag or in the ``--config`` YAML: grm reads numbers in ASCII only."""
    values: list[tuple[str, Any]] = [(argv[i - 1] if i else "argument", value) for i, value in enumerate(argv)]
    if "--config" in argv[:-1]:
        import yaml

        path = argv[argv.index("--config") + 1]
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            loaded = None  # TrlParser names the file's problem
        if isinstance(loaded, dict):
            values += [(f"{key} (in {path})", value) for key, value in loaded.items()]
    for flag, value in values:
        if isinstance(value, str) and not value.isascii() and _number(value):
            raise ValueError(f"{flag}: expected a number in ASCII digits (0-9), got {value!r}")


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
