"""Meta RM training data and trainer (SPCT §3.3): label sampled judgements by correctness, fit a scalar model.

1. :func:`build_dataset` samples ``k`` judgements per labelled :class:`~grm.types.Example` with a GRM and writes one
   JSONL row per judgement, labelled 1 if it is correct by :func:`grm.training.is_correct` (unparseable ones are 0).
   The file loads with ``datasets.load_dataset("json", data_files=...)``; re-running resumes it.
2. :func:`train` fits a sequence-classification model (one logit) on those rows through the transformers
   ``Trainer`` with ``objective`` ``pointwise`` (binary cross-entropy, the paper's), ``pairwise`` (a logistic loss
   on every correct-minus-incorrect logit difference among one example's judgements: the choice MetaRM@k makes)
   or ``both``, then reports held-out AUC (pooled and within an example) and accuracy and saves a model that
   :meth:`grm.MetaRM.from_pretrained` loads.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import TrainingArguments

from grm.jsonl import JsonlWriter, load_finished
from grm.meta_rm import META_RM_TEMPLATE_FILE, build_messages, encode, ensure_pad_id, load_template, pad
from grm.metrics import roc_auc
from grm.progress import progress_bar
from grm.rule import best_index, is_correct
from grm.scoring import ScoringOptions, resolve_options
from grm.seeding import seeded_rng
from grm.settings import resolve_settings, write_settings
from grm.training.common import fit_to_device, log_saved, parse_config, resume_checkpoint
from grm.types import Example, Item

if TYPE_CHECKING:
    from grm.model import GRM

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- dataset


@dataclass
class BuildStats:
    """What one :func:`build_dataset` run did: examples sampled, skipped as malformed, already complete; rows
    written and how many of them were labelled correct."""

    sampled: int = 0
    skipped: int = 0
    resumed: int = 0
    rows: int = 0
    correct: int = 0


def build_dataset(
    grm: GRM,
    examples: Iterable[Example],
    output: str | Path,
    options: ScoringOptions | None = None,
    *,
    chunk_size: int = 16,
    model: dict[str, Any] | None = None,
    **overrides: Any,
) -> BuildStats:
    """Sample ``k`` judgements of each example with ``grm`` and append one labelled row per judgement to ``output``.

    ``options`` (default ``ScoringOptions(k=8)``; fields also by keyword, e.g. ``k=4, seed=0``) set the sampling;
    chunks of ``chunk_size`` examples go to ``grm.score_batch`` at a time, each example seeded by ``seed`` and its
    position in ``examples`` (so neither the chunking nor resuming changes its samples). Every judgement is
    labelled, so ``adaptive`` (which draws fewer) cannot be used.

    A row holds ``key`` (``"example:sample"``), ``example`` (the example's position in ``examples``), ``sample``,
    ``id``, ``query`` (chat messages), ``responses`` (the example's order), ``truth``, ``order`` (the response
    order the judgement saw), ``judgement`` (its text), ``scores`` (caller's order, None if unreadable),
    ``error`` and ``label`` (1 correct, 0 not). Examples whose rows are all in ``output`` are skipped, so an
    interrupted run resumes; a partly written example is sampled again for its missing rows (when seeded, they
    are the rows the interrupted run would have written). Malformed examples (truth of the wrong length, no
    unique best among n >= 2) are logged and skipped.

    The options but ``k`` (and ``model``, what describes the GRM: :func:`grm.jobs.model_settings`) are recorded
    beside ``output`` (:mod:`grm.settings`): a resume with other settings is refused, and an unseeded run draws its
    seed once and resumes with it (a larger ``k`` adds the missing samples).
    """
    options = resolve_options(options, overrides, default=ScoringOptions(k=8))
    if options.in_rounds:
        raise ValueError(
            "build_dataset labels all k judgements of every example; "
            "adaptive=True would draw fewer, and so would a budget"
        )
    k = options.k
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    have: dict[int, set[int]] = defaultdict(set)
    for example, sample in load_finished(output, "key", keep=lambda row: (row["example"], row["sample"])).values():
        have[example].add(sample)
    recorded = {**asdict(options), **(model or {})}
    del recorded["k"]  # a larger k adds samples: sample i of an example is seeded the same whatever k is
    settings = resolve_settings(output, recorded, started=bool(have))
    write_settings(output, settings)
    if options.seed is None:
        logger.info(
            "seed %d (%s; seed=%d repeats this run)",
            settings["seed"],
            "of the run resumed" if have else "drawn",
            settings["seed"],
        )
    options = options.replace(seed=settings["seed"])
    stats = BuildStats()
    pending: list[tuple[int, Example, Item, list[int]]] = []

    def flush(writer: JsonlWriter) -> None:
        if not pending:
            return
        rewards = grm.score_batch([item for _, _, item, _ in pending], options, keys=[i for i, _, _, _ in pending])
        for (index, example, item, missing), reward in zip(pending, rewards):
            for sample in missing:
                j = reward.judgements[sample]
                label = int(is_correct(j.scores, example.truth))
                writer.write(
                    {
                        "key": f"{index}:{sample}",
                        "example": index,
                        "sample": sample,
                        "id": None if example.id is None else str(example.id),
                        "query": item.query,
                        "responses": item.responses,
                        "truth": [float(t) for t in example.truth],
                        "order": j.order,
                        "judgement": j.text,
                        "scores": j.scores,
                        "error": j.error,
                        "label": label,
                    }
                )
                stats.rows += 1
                stats.correct += label
            stats.sampled += 1
        bar.update(len(pending))
        pending.clear()

    total = len(examples) if isinstance(examples, Sequence) else None
    with (
        JsonlWriter(output) as writer,
        progress_bar(total=total, desc="meta RM data", unit="example", leave=True) as bar,
    ):
        for index, example in enumerate(examples):
            missing = [s for s in range(k) if s not in have.get(index, ())]
            if not missing:
                stats.resumed += 1
                bar.update(1)
                continue
            try:
                item = _labelled_item(example)
            except (TypeError, ValueError) as e:
                logger.warning("example %d (id %s) skipped: %s", index, getattr(example, "id", None), e)
                stats.skipped += 1
                bar.update(1)
                continue
            pending.append((index, example, item, missing))
            if len(pending) >= chunk_size:
                flush(writer)
        flush(writer)
    logger.info(
        "meta RM data: %d examples sampled (%d rows, %.1f%% correct), %d already done, %d skipped; in %s",
        stats.sampled,
        stats.rows,
        100 * stats.correct / max(stats.rows, 1),
        stats.resumed,
        stats.skipped,
        output,
    )
    return stats


def _labelled_item(example: Example) -> Item:
    """The GRM item for an example, after checking its truth can label judgements."""
    if not isinstance(example, Example):
        raise TypeError(f"expected a grm.types.Example, got {type(example).__name__}")
    item = Item.coerce(example)
    if len(example.truth) != len(item.responses):
        raise ValueError(f"truth has {len(example.truth)} values for {len(item.responses)} responses")
    if len(item.responses) > 1:
        best_index(example.truth)  # raises when no response is uniquely best
    return item


# ---------------------------------------------------------------------------------------------------- metrics


def classification_metrics(
    labels: Sequence[float], logits: Sequence[float], examples: Sequence[Any] | None = None
) -> dict[str, float]:
    """Held-out ``auc``, ``accuracy`` (logit > 0 means "correct") and ``positive_rate`` (share labelled correct);
    given each judgement's example, also ``within_auc``: the mean AUC inside the examples that have both correct
    and incorrect judgements (NaN if none has), the discrimination MetaRM@k uses."""
    y = np.asarray(labels, dtype=float).reshape(-1)
    z = np.asarray(logits, dtype=float).reshape(-1)
    metrics = {
        "auc": roc_auc(y, z),
        "accuracy": float(((z > 0) == (y == 1)).mean()),
        "positive_rate": float((y == 1).mean()),
    }
    if examples is not None:
        groups = np.asarray(examples).reshape(-1)
        if len(groups) != len(y):
            raise ValueError(f"{len(groups)} examples for {len(y)} labels")
        aucs = [roc_auc(y[groups == g], z[groups == g]) for g in np.unique(groups)]
        aucs = [a for a in aucs if not np.isnan(a)]
        metrics["within_auc"] = float(np.mean(aucs)) if aucs else float("nan")
    return metrics


# ---------------------------------------------------------------------------------------------------- training


OBJECTIVES = ("pointwise", "pairwise", "both")
"""The meta RM's training objectives (:class:`MetaRMConfig` ``objective``)."""


@dataclass
class MetaRMConfig(TrainingArguments):
    """Meta RM training options: every ``transformers.TrainingArguments`` field plus the ones below."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "model to start from: a causal LM (a new one-logit head is added) or a meta RM"},
    )
    train_file: str | None = field(default=None, metadata={"help": "JSONL written by `grm train meta-rm-data`"})
    eval_file: str | None = field(
        default=None, metadata={"help": "held-out JSONL of the same kind (default: split off train_file)"}
    )
    eval_fraction: float = field(
        default=0.1, metadata={"help": "share of train_file's examples held out when eval_file is not given"}
    )
    max_length: int = field(default=4096, metadata={"help": "longest input in tokens; the front of longer ones is cut"})
    template: str | None = field(default=None, metadata={"help": "meta RM template (.j2 path); default: built-in"})
    pos_weight: float = field(default=1.0, metadata={"help": "BCE weight of correct judgements (> 1 when rare)"})
    objective: str = field(
        default="pointwise",
        metadata={
            "help": "pointwise: BCE on each judgement's label (the paper's); pairwise: logistic loss on the logit "
            "differences of one example's correct vs incorrect judgements (batches then count examples, each with "
            "all its judgements); both: their sum"
        },
    )
    mixed_only: bool = field(
        default=False,
        metadata={
            "help": "train only on examples with both correct and incorrect judgements: the choice MetaRM@k makes "
            "(the others teach which questions are hard, not which judgement of a question is right)"
        },
    )
    model_dtype: str = field(default="float32", metadata={"help": "dtype to load the weights in"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow model code from the model repository"})

    def __post_init__(self) -> None:
        fit_to_device(self)
        super().__post_init__()
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path is required: the model to start the meta RM from")
        if not self.train_file:
            raise ValueError("train_file is required: a JSONL written by `grm train meta-rm-data`")
        if self.eval_file is None and not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in (0, 1) when no eval_file is given, got {self.eval_fraction}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        if self.pos_weight <= 0:
            raise ValueError(f"pos_weight must be > 0, got {self.pos_weight}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")

    @property
    def grouped(self) -> bool:
        """Whether a training row is one example with all its judgements (the pairwise loss needs them together)."""
        return self.objective != "pointwise"


def _columns(outputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The logits, the 0/1 labels and (for labels of shape (N, 2)) each judgement's example number."""
    logits = outputs.logits.float().reshape(-1)
    labels = labels.to(logits.device, torch.float32)
    if labels.dim() == 2:
        return logits, labels[:, 0], labels[:, 1]
    return logits, labels.reshape(-1), None


def _per_judgement(num_items_in_batch: Any, labels: torch.Tensor, n: int) -> float:
    """The judgements the loss is averaged over: ``n``, or the Trainer's count across gradient accumulation (it
    counts every label column, so (label, example) labels count twice)."""
    if num_items_in_batch is None:
        return float(n)
    return float(num_items_in_batch) / (labels.shape[1] if labels.dim() == 2 else 1)


def bce_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None, *, pos_weight: float = 1.0):
    """Binary cross-entropy of the one-logit outputs against 0/1 labels (a ``Trainer`` ``compute_loss_func``).

    ``labels`` are 0/1 or (label, example) rows. Summed, then divided by the judgements of the batch (across
    gradient accumulation when the Trainer gives ``num_items_in_batch``).
    """
    logits, y, _ = _columns(outputs, labels)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, y, pos_weight=torch.tensor(pos_weight, device=logits.device), reduction="sum"
    )
    return loss / _per_judgement(num_items_in_batch, labels, y.numel())


def pairwise_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """Mean of ``-log sigmoid(z_correct - z_incorrect)`` over every pair of one example's correct and incorrect
    judgements in the batch (``labels``: (label, example) rows); 0 (with a gradient) when the batch has no pair.

    Under gradient accumulation the batch's mean is weighted by its share of the accumulated judgements.
    """
    logits, y, groups = _columns(outputs, labels)
    if groups is None:
        raise ValueError("the pairwise loss needs (label, example) labels")
    pairs = (groups[:, None] == groups[None, :]) & (y[:, None] == 1) & (y[None, :] == 0)
    if not pairs.any():
        return logits.sum() * 0.0
    margins = (logits[:, None] - logits[None, :])[pairs]
    loss = -torch.nn.functional.logsigmoid(margins).mean()
    return loss * (y.numel() / _per_judgement(num_items_in_batch, labels, y.numel()))


def meta_rm_loss(
    outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None, *, objective: str, pos_weight: float = 1.0
) -> torch.Tensor:
    """The training loss of ``objective`` (see :class:`MetaRMConfig`)."""
    if objective == "pointwise":
        return bce_loss(outputs, labels, num_items_in_batch, pos_weight=pos_weight)
    loss = pairwise_loss(outputs, labels, num_items_in_batch)
    if objective == "both":
        loss = loss + bce_loss(outputs, labels, num_items_in_batch, pos_weight=pos_weight)
    return loss


@dataclass
class _Collator:
    """Right-pads ``input_ids`` as :class:`grm.MetaRM` does at inference and stacks (label, example) ``labels``;
    a grouped row (one example's judgements) is flattened into its judgements."""

    pad_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids: list[list[int]] = []
        labels: list[list[float]] = []
        for f in features:
            if f["input_ids"] and isinstance(f["input_ids"][0], list):
                ids += f["input_ids"]
                labels += f["labels"]
            else:
                ids.append(f["input_ids"])
                labels.append(f["labels"])
        batch = pad(ids, self.pad_id)
        batch["labels"] = torch.tensor(labels, dtype=torch.float32)
        return batch


def load_model(config: MetaRMConfig) -> tuple[Any, Any]:
    """The model to train (``num_labels=1``; a causal LM gets a fresh head) and its tokenizer, pad id set."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.model_name_or_path, trust_remote_code=config.trust_remote_code)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"the tokenizer of {config.model_name_or_path!r} has no chat template")
    model = AutoModelForSequenceClassification.from_pretrained(
        config.model_name_or_path,
        num_labels=1,
        dtype=config.model_dtype,
        trust_remote_code=config.trust_remote_code,
    )
    ensure_pad_id(model, tokenizer)
    return model, tokenizer


def load_splits(config: MetaRMConfig, tokenizer: Any) -> tuple[Any, Any]:
    """Tokenized train and held-out datasets (columns ``input_ids``, ``labels``).

    Without an ``eval_file``, whole examples (all their judgements) are held out, so none leaks into training.
    """
    from datasets import load_dataset

    train = load_dataset("json", data_files=config.train_file, split="train")
    if config.eval_file:
        held = load_dataset("json", data_files=config.eval_file, split="train")
    else:
        groups = _examples(train)
        names = sorted(set(groups))
        n_eval = max(1, round(len(names) * config.eval_fraction))
        if n_eval >= len(names):
            raise ValueError(
                f"{config.train_file} has {len(names)} examples; holding out {n_eval} leaves none to train on"
            )
        chosen = set(seeded_rng(config.seed, "meta-rm held out").sample(names, n_eval))
        held = train.select([i for i, g in enumerate(groups) if g in chosen])
        train = train.select([i for i, g in enumerate(groups) if g not in chosen])
    if config.mixed_only:
        train = _mixed(train, config.train_file)
    template = load_template(config.template)
    tokenize = functools.partial(_tokenize, tokenizer=tokenizer, template=template, max_length=config.max_length)
    out = []
    for name, ds in (("train", train), ("eval", held)):
        missing = {"query", "responses", "judgement", "order", "label"} - set(ds.column_names)
        if missing:
            raise ValueError(f"{name} data lacks columns {sorted(missing)}; write it with `grm train meta-rm-data`")
        numbers: dict[Any, int] = {}
        groups = [numbers.setdefault(g, len(numbers)) for g in _examples(ds)]
        ds = ds.add_column("_example", groups)
        ds = ds.map(tokenize, remove_columns=ds.column_names, desc=f"tokenize {name}")
        n_cut = sum(ds["n_cut"])
        if n_cut:
            logger.warning(
                "%s: %d inputs over max_length=%d tokens had their fronts cut", name, n_cut, config.max_length
            )
        ds = ds.remove_columns("n_cut")
        out.append(_grouped(ds, groups, config.seed) if name == "train" and config.grouped else ds)
    logger.info("meta RM data: %d train rows and %d held-out judgements", len(out[0]), len(out[1]))
    return out[0], out[1]


def _grouped(ds: Any, groups: Sequence[int], seed: int) -> Any:
    """One row per example holding all its judgements (lists of ``input_ids`` and ``labels``), in a seeded order."""
    from datasets import Dataset

    members: dict[int, list[int]] = defaultdict(list)
    for row, g in enumerate(groups):
        members[g].append(row)
    ids, labels = ds["input_ids"], ds["labels"]
    rows = [{"input_ids": [ids[r] for r in rs], "labels": [labels[r] for r in rs]} for rs in members.values()]
    seeded_rng(seed, "meta-rm examples").shuffle(rows)
    return Dataset.from_list(rows)


def _examples(ds: Any) -> list[Any]:
    """The example each row's judgement belongs to (its own row number when the data has no ``example`` column)."""
    return ds["example"] if "example" in ds.column_names else list(range(len(ds)))


def _mixed(ds: Any, origin: str) -> Any:
    """The rows of ``ds`` whose example has both correct and incorrect judgements (ValueError if none has)."""
    groups = _examples(ds)
    labels: dict[Any, set[float]] = {}
    for g, label in zip(groups, ds["label"]):
        labels.setdefault(g, set()).add(float(label))
    keep = [i for i, g in enumerate(groups) if len(labels[g]) == 2]
    if not keep:
        raise ValueError(f"mixed_only: no example of {origin} has both correct and incorrect judgements")
    logger.info("mixed_only: %d of %d training judgements kept", len(keep), len(ds))
    return ds.select(keep)


def _tokenize(row: dict[str, Any], *, tokenizer: Any, template: Any, max_length: int) -> dict[str, Any]:
    messages = build_messages(row["query"], row["responses"], row["judgement"], row["order"], template=template)
    ids, cut = encode(tokenizer, messages, max_length)
    return {"input_ids": ids, "labels": [float(row["label"]), float(row["_example"])], "n_cut": int(cut > 0)}


def _eval_metrics(prediction: Any) -> dict[str, float]:
    """The Trainer's ``compute_metrics``: the logits come first when the model returns more than one output."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    labels = np.asarray(prediction.label_ids)
    return classification_metrics(labels[:, 0], logits, examples=labels[:, 1])


def train(config: MetaRMConfig) -> dict[str, float]:
    """Train a meta RM, save it (with its template) to ``config.output_dir``, and return the held-out metrics.

    ``resume_from_checkpoint: auto`` resumes from the last checkpoint in ``output_dir`` if any. The metrics
    (``eval_auc``, ``eval_within_auc``, ``eval_accuracy``, ``eval_positive_rate``, ``eval_loss``) also go to
    ``eval_results.json`` there.
    """
    from transformers import Trainer, set_seed

    set_seed(config.seed)
    model, tokenizer = load_model(config)
    train_ds, eval_ds = load_splits(config, tokenizer)
    trainer = Trainer(
        model=model,
        args=config,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        data_collator=_Collator(model.config.pad_token_id),
        compute_loss_func=functools.partial(meta_rm_loss, objective=config.objective, pos_weight=config.pos_weight),
        compute_metrics=_eval_metrics,
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint(config.output_dir, config.resume_from_checkpoint))
    trainer.save_model(config.output_dir)
    trainer.save_state()
    Path(config.output_dir, META_RM_TEMPLATE_FILE).write_text(load_template(config.template).source, encoding="utf-8")
    metrics = trainer.evaluate()
    trainer.save_metrics("eval", metrics)
    logger.info(
        "held-out: AUC %s (%s within an example), accuracy %.4f on %d judgements (%.1f%% correct)",
        describe_auc(metrics["eval_auc"], metrics["eval_positive_rate"]),
        describe_auc(metrics["eval_within_auc"], metrics["eval_positive_rate"], within=True),
        metrics["eval_accuracy"],
        len(eval_ds),
        100 * metrics["eval_positive_rate"],
    )
    log_saved("meta RM", config.output_dir)
    return metrics


def describe_auc(value: float, positive_rate: float, *, within: bool = False) -> str:
    """An AUC for a log line, or why there is none: it needs both correct and incorrect judgements (pooled), or an
    example that has both (within an example)."""
    if not math.isnan(value):
        return f"{value:.4f}"
    if not within and positive_rate in (0.0, 1.0):
        return f"n/a (every held-out judgement is {'correct' if positive_rate else 'incorrect'})"
    return "n/a (no held-out example has both correct and incorrect judgements)" if within else "n/a"


# ---------------------------------------------------------------------------------------------------- commands


def train_command(args: argparse.Namespace) -> int:
    """``grm train meta-rm --config FILE [--field value ...]``: config fields from YAML, flags override them."""
    train(parse_config(MetaRMConfig, args.args, prog="grm train meta-rm"))
    return 0


def data_command(args: argparse.Namespace) -> int:
    """``grm train meta-rm-data``: sample and label judgements of labelled examples (any format of
    :mod:`grm.training.data`)."""
    from grm.flags import check_model_flags, model_settings, open_scorer, scoring_options
    from grm.training.data import LoadStats, iter_examples

    options = scoring_options(args)  # checked before a model is loaded
    check_model_flags(args)
    loaded = LoadStats()
    with open_scorer(args) as (grm, _):  # with --ray: replicas on a Ray cluster
        examples = iter_examples(args.input, format=args.format, score_range=grm.score_range, stats=loaded)
        stats = build_dataset(
            grm, examples, args.output, options, chunk_size=args.chunk_size, model=model_settings(args)
        )
    return 1 if stats.skipped or loaded.rejected else 0
