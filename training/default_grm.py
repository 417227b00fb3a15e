"""Build the GRM and meta RM shipped with grm: SPCT from scratch on a CPU, on the synthetic judging task.

``grm train default-grm --config training/configs/default_grm.yaml [--stages sft,rft] [--field value ...]``

Stages, in order (with ``stages: all`` a stage whose work is recorded as finished in ``OUTPUT/status.json`` is
skipped, so re-running the command resumes; stages named in ``stages`` always run, resuming what they can). A stage
that runs again discards what later stages made from its previous output (:meth:`Pipeline.discard_after`):

1. ``data``: labelled examples of :mod:`grm.training.synthetic` for each training stage (distinct seeds), the
   validation set (``validation_seed``: GRPO's learning curves, and what settings were chosen on) and the test set
   (``test_seed``: the final numbers, used for nothing else), as JSONL under ``OUTPUT/data``.
2. ``init``: a byte-level BPE tokenizer trained on the task's prompts and teacher judgements (the template's
   delimiters and the output format's headers are single tokens) and a small random Qwen2 model.
3. ``sft``: SFT warm start on the rule-based teacher's traces, its errors included
   (:func:`grm.training.rft.train_sft`; config ``sft_config``).
4. ``rft``: rejective fine-tuning from the SFT model (:func:`grm.training.rft.run_rft`; ``rft_config``).
5. ``grpo``: rule-based online RL from the RFT model (:func:`grm.training.grpo.run_grpo`; ``grpo_config``), with
   its learning curves on the validation set (``OUTPUT/grpo/curves.jsonl``).
6. ``meta_rm``: judgements of the GRPO model labelled by correctness
   (:func:`grm.training.meta_rm.build_dataset`), then training from the GRPO model's weights, or from a fresh
   model of ``meta_rm_hidden_size`` x ``meta_rm_layers`` when set (:func:`grm.training.meta_rm.train`;
   ``meta_rm_config``).
7. ``eval``: on the test set (``eval_examples`` items of 2-4 responses, the same items for every model),
   greedy accuracy of the SFT, RFT and GRPO models, ``eval_stage_k`` samples per item of SFT and RFT, and
   ``eval_k`` of the shipped GRPO model (Voting@k, and MetaRM@k with its meta RM), and Voting@k of the teacher,
   through :func:`grm.eval.evaluate` (cached: an interrupted evaluation resumes). The report compares the stages
   item by item (paired bootstrap).
8. ``ship``: the GRPO model and the meta RM, without training state, into ``ship_dir`` (default: grm's
   ``assets`` folder), where ``GRM.from_pretrained()`` and ``MetaRM.from_pretrained()`` find them.
9. ``report``: ``report_dir/default_grm.md`` and ``default_grm.png`` (:mod:`grm.training.default_grm_report`).

Every model folder gets a ``grm_config.json`` and the template file (the trainers carry them over from the model
they start from), so it loads with its exact prompt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grm.assets import write_grm_config
from grm.prompts import PromptTemplate
from grm.seeding import seed_torch
from grm.training import synthetic
from grm.training.common import parse_config, read_jsonl

logger = logging.getLogger(__name__)

STAGES = ("data", "init", "sft", "rft", "grpo", "meta_rm", "eval", "ship", "report")
MODELS = ("sft", "rft", "grpo")
"""The GRM checkpoints evaluated, in training order (``grpo`` is the one shipped)."""
SPLITS = ("sft", "rft", "grpo", "meta_rm")
"""Training data sets, one per stage; split ``s`` uses seed ``seed + SPLITS.index(s)``."""
HELDOUT_RESPONSE_WEIGHTS = (0, 4, 3, 2)
"""Validation and test items have 2-4 responses (the training sets' mix without lone responses): accuracy is then
the choice of the best response, which voting and the meta RM are for."""
EXTRA_TOKENS = (
    "[The Start of Query]\n",
    "[The End of Query]\n",
    "[The Start of Response ",
    "[The End of Response ",
    "Specific Criteria:\n",
    " (Weight: 100%): ",
    "Analysis:\n",
    "Scores: \\boxed{",
)
"""Phrases of the template and the output format made single tokens: shorter sequences, faster CPU training."""
OUTPUTS = {
    "sft": ("sft_data", "sft"),
    "rft": ("rft",),
    "grpo": ("grpo",),
    "meta_rm": ("meta_rm_data", "meta_rm_init", "meta_rm"),
}
"""The folders of OUTPUT each training stage writes."""
EVALUATED = {"sft": "sft", "rft": "rft", "grpo": "grpo", "meta_rm": "grpo"}
"""The evaluation (``OUTPUT/eval/NAME``) a training stage's output is in (the meta RM's: the GRPO model's MetaRM@k)."""
SHIPPED_SKIP = {
    "training_args.bin",
    "trainer_state.json",
    "README.md",
    "all_results.json",
    "train_results.json",
    "curves.jsonl",
}
"""Files of a training output folder that are not part of the shipped model."""


@dataclass
class DefaultGRMConfig:
    """What ``grm train default-grm`` builds; every field works in the YAML or as a ``--flag``."""

    output_dir: str = field(default="runs/default_grm", metadata={"help": "Folder for all stages' outputs."})
    stages: str = field(default="all", metadata={"help": f"'all' or a comma-separated selection of {STAGES}."})
    seed: int = field(default=0, metadata={"help": "Seed of the training data (and of training)."})
    validation_seed: int = field(
        default=1000, metadata={"help": "Seed of the validation set (GRPO's curves; settings are chosen on it)."}
    )
    test_seed: int = field(default=271828, metadata={"help": "Seed of the test set (the final numbers only)."})
    teacher_error_rate: float = field(default=0.25, metadata={"help": "Probability a teacher judgement is wrong."})
    sft_examples: int = field(default=4000, metadata={"help": "Examples the teacher judges for the SFT set."})
    teacher_samples: int = field(default=1, metadata={"help": "Teacher judgements per SFT example."})
    rft_examples: int = field(default=600, metadata={"help": "Examples sampled for rejective fine-tuning."})
    grpo_examples: int = field(default=200, metadata={"help": "Examples (prompts) for GRPO."})
    meta_rm_examples: int = field(default=300, metadata={"help": "Examples whose judgements train the meta RM."})
    meta_rm_k: int = field(default=8, metadata={"help": "Judgements sampled per meta RM example."})
    meta_rm_hidden_size: int = field(
        default=0, metadata={"help": "0: the meta RM starts from the GRM's weights; N: from a fresh model this wide."}
    )
    meta_rm_layers: int = field(default=0, metadata={"help": "Layers of that fresh model (0: the GRM's)."})
    validation_examples: int = field(default=1000, metadata={"help": "Validation examples (2-4 responses each)."})
    eval_examples: int = field(default=1000, metadata={"help": "Test examples (2-4 responses each)."})
    eval_k: int = field(default=32, metadata={"help": "Judgements sampled per held-out example of the shipped model."})
    eval_stage_k: int = field(
        default=8, metadata={"help": "Judgements sampled per held-out example of the earlier stages (SFT, RFT)."}
    )
    eval_draws: int = field(default=8, metadata={"help": "Random draws per k for Voting@k and MetaRM@k."})
    eval_bootstrap: int = field(default=200, metadata={"help": "Bootstrap resamples for the 95% intervals."})
    batch_size: int = field(default=64, metadata={"help": "Sequences per generation batch (transformers)."})
    vocab_size: int = field(default=600, metadata={"help": "BPE vocabulary size (fewer if the texts run out)."})
    hidden_size: int = field(default=128, metadata={"help": "Model width."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads (of hidden_size / num_heads dimensions)."})
    num_layers: int = field(default=4, metadata={"help": "Transformer layers."})
    intermediate_size: int = field(default=512, metadata={"help": "MLP width."})
    max_positions: int = field(default=512, metadata={"help": "Context length."})
    max_new_tokens: int = field(default=96, metadata={"help": "Generation budget per judgement."})
    sft_config: str = field(default="training/configs/default_grm/sft.yaml", metadata={"help": "RFTConfig YAML."})
    rft_config: str = field(default="training/configs/default_grm/rft.yaml", metadata={"help": "RFTConfig YAML."})
    grpo_config: str = field(
        default="training/configs/default_grm/grpo.yaml", metadata={"help": "SPCTGRPOConfig YAML."}
    )
    meta_rm_config: str = field(
        default="training/configs/default_grm/meta_rm.yaml", metadata={"help": "MetaRMConfig YAML."}
    )
    torch_threads: int = field(default=0, metadata={"help": "torch.set_num_threads (0: torch's default)."})
    report_dir: str = field(default="reports", metadata={"help": "Where default_grm.md and its plot go."})
    ship_dir: str | None = field(default=None, metadata={"help": "Where the models go (default: grm's assets)."})

    def __post_init__(self) -> None:
        selected = self.selected()
        unknown = [s for s in selected if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; expected 'all' or a comma-separated selection of {STAGES}")
        if self.num_heads < 1 or self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must split into num_heads={self.num_heads} equal heads")
        for name in ("sft_examples", "rft_examples", "grpo_examples", "meta_rm_examples", "eval_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_k < 2 or self.meta_rm_k < 1 or self.teacher_samples < 1:
            raise ValueError(
                f"need eval_k >= 2, meta_rm_k >= 1, teacher_samples >= 1; got {self.eval_k}, {self.meta_rm_k}, "
                f"{self.teacher_samples}"
            )
        head = self.hidden_size // self.num_heads
        if self.meta_rm_hidden_size < 0 or self.meta_rm_hidden_size % head or self.meta_rm_layers < 0:
            raise ValueError(
                f"meta_rm_hidden_size must be 0 or a multiple of the GRM's head size {head}, and meta_rm_layers >= 0; "
                f"got {self.meta_rm_hidden_size}, {self.meta_rm_layers}"
            )
        if not 1 <= self.eval_stage_k <= self.eval_k:
            raise ValueError(f"eval_stage_k must be in 1..eval_k={self.eval_k}, got {self.eval_stage_k}")

    def selected(self) -> list[str]:
        """The stages to run, in pipeline order."""
        if self.stages.strip() == "all":
            return list(STAGES)
        names = [s.strip() for s in self.stages.split(",") if s.strip()]
        return [s for s in STAGES if s in names] + [s for s in names if s not in STAGES]


class Pipeline:
    """The stages of :class:`DefaultGRMConfig`, with their folders and the run's status file."""

    stages, models, splits = STAGES, MODELS, SPLITS

    def __init__(self, config: DefaultGRMConfig) -> None:
        self.config = config
        self.out = Path(config.output_dir)
        self.status_path = self.out / "status.json"
        self.template = PromptTemplate.load(synthetic.TEMPLATE)

    # ------------------------------------------------------------------------------------------------ paths

    def data(self, split: str) -> Path:
        return self.out / "data" / f"{split}.jsonl"

    def model(self, name: str) -> Path:
        """The folder of a stage's model: ``init``, ``sft``, ``rft``, ``grpo`` or ``meta_rm``."""
        return self.out / name

    def eval_dir(self, name: str, mode: str) -> Path:
        return self.out / "eval" / name / mode

    @property
    def ship_dir(self) -> Path:
        if self.config.ship_dir:
            return Path(self.config.ship_dir)
        import grm.assets

        return Path(grm.assets.__file__).parent

    # ------------------------------------------------------------------------------------------------ running

    def status(self) -> dict[str, Any]:
        return json.loads(self.status_path.read_text(encoding="utf-8")) if self.status_path.exists() else {}

    def run(self) -> dict[str, Any]:
        """Run the selected stages; return the status (seconds per stage)."""
        import torch

        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "pipeline_config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        forced = self.config.stages.strip() != "all"
        for name in self.config.selected():
            if not forced and self.status().get(name, {}).get("done"):
                logger.info("stage %s: done before (%s); skipped", name, self.status_path)
                continue
            logger.info("stage %s: starting", name)
            start = time.monotonic()
            getattr(self, f"stage_{name}")()
            seconds = time.monotonic() - start
            status = self.status()
            status[name] = {
                "done": True,
                "seconds": round(seconds, 1),
                "threads": torch.get_num_threads(),
                "load": round(os.getloadavg()[2], 2),  # other jobs on the machine slow a stage down
            }
            self.status_path.write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
            logger.info("stage %s: finished in %.0f s", name, seconds)
            self.discard_after(name)
        logger.info("default GRM: outputs saved to %s (times per stage: %s)", self.out, self.status_path)
        return self.status()

    def discard_after(self, stage: str) -> None:
        """What later stages made from an earlier output of ``stage`` (their folders, the evaluations of the models
        it changed) is removed, and those stages are no longer recorded as done: so ``stages: all`` makes them
        again, and no evaluation or meta-RM data of a previous model is resumed as if it were the new one's."""
        if stage not in ("data", "init", *OUTPUTS):
            return
        later = [s for s in OUTPUTS if STAGES.index(s) > STAGES.index(stage)]
        stale = [self.out / folder for s in later for folder in OUTPUTS[s]]
        stale += [self.out / "eval" / EVALUATED[s] for s in dict.fromkeys([stage, *later]) if s in EVALUATED]
        for path in stale:
            if path.exists():
                shutil.rmtree(path)
                logger.info("removed %s: it was made from the previous %s output", path, stage)
        status = self.status()
        kept = {n: v for n, v in status.items() if n not in STAGES or STAGES.index(n) <= STAGES.index(stage)}
        if kept != status:
            self.status_path.write_text(json.dumps(kept, indent=2) + "\n", encoding="utf-8")

    def stage_config(self, config_class: type, yaml_path: str, **overrides: Any):
        """A trainer config from its YAML with the pipeline's paths and seed as flags (flags win)."""
        argv = ["--config", yaml_path]
        for key, value in overrides.items():
            argv += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        return parse_config(config_class, argv)

    def load_grm(self, name: str):
        from grm.model import GRM

        return GRM.from_pretrained(self.model(name), batch_size=self.config.batch_size, progress=False)

    # ------------------------------------------------------------------------------------------------ stages

    def stage_data(self) -> None:
        c = self.config
        sizes = {"sft": c.sft_examples, "rft": c.rft_examples, "grpo": c.grpo_examples, "meta_rm": c.meta_rm_examples}
        for i, split in enumerate(SPLITS):
            synthetic.write_examples(self.data(split), synthetic.make_examples(sizes[split], c.seed + i))
        for split, n, seed in (
            ("validation", c.validation_examples, c.validation_seed),
            ("test", c.eval_examples, c.test_seed),
        ):
            examples = synthetic.make_examples(n, seed, response_weights=HELDOUT_RESPONSE_WEIGHTS)
            synthetic.write_examples(self.data(split), examples)

    def new_model(self, tokenizer: Any, hidden: int, layers: int, heads: int, intermediate: int, folder: Path):
        """A random Qwen2 of this size for ``tokenizer``, saved with it in ``folder`` (seeded by ``seed``)."""
        from transformers import AutoModelForCausalLM

        from grm.tiny import qwen2_config, save

        config = qwen2_config(
            len(tokenizer), hidden=hidden, layers=layers, heads=heads, max_positions=self.config.max_positions
        )
        config.intermediate_size = intermediate
        config.eos_token_id, config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
        seed_torch(self.config.seed)
        model = AutoModelForCausalLM.from_config(config)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        save(model, tokenizer, folder)
        return model

    def stage_init(self) -> None:
        from grm.tiny import build_tokenizer

        c = self.config
        rows, _ = self.teacher_rows(synthetic.make_examples(2000, c.seed + len(SPLITS)), samples=1)
        texts = [m["content"] for row in rows for m in row["prompt"] + row["completion"]]
        tokenizer = build_tokenizer([*texts, "user assistant system"], vocab_size=c.vocab_size)
        tokenizer.add_tokens(list(EXTRA_TOKENS))
        longest = max(len(tokenizer(row["completion"][0]["content"])["input_ids"]) for row in rows)
        if longest >= c.max_new_tokens:
            raise ValueError(
                f"max_new_tokens={c.max_new_tokens} cuts off the teacher's longest judgements ({longest} tokens): "
                f"the model could never finish them; raise it above {longest}"
            )
        size = (c.hidden_size, c.num_layers, c.num_heads, c.intermediate_size)
        model = self.new_model(tokenizer, *size, self.model("init"))
        write_grm_config(
            self.model("init"),
            self.template.source,
            score_range=self.template.score_range,
            max_new_tokens=c.max_new_tokens,
        )
        logger.info(
            "init: vocabulary %d, %.2fM parameters, longest teacher judgement %d tokens",
            len(tokenizer),
            sum(p.numel() for p in model.parameters()) / 1e6,
            longest,
        )

    def teacher_rows(
        self, examples: Sequence[synthetic.SyntheticExample], *, samples: int
    ) -> tuple[list[dict[str, Any]], float]:
        """SFT rows (the RFT set's format) of ``samples`` teacher judgements per example, each in its own response
        order, and the share of them that are correct."""
        from grm.model import GRM
        from grm.training.rewards import is_correct

        rm = GRM(synthetic.Teacher(self.config.teacher_error_rate, self.config.seed), self.template)
        rewards = rm.score_batch([(e.query, e.responses) for e in examples], k=samples, seed=self.config.seed)
        rows, correct = [], 0
        for index, (e, reward) in enumerate(zip(examples, rewards)):
            for number, j in enumerate(reward.judgements):
                prompt = rm.build_prompt(e.query, [e.responses[p] for p in j.order])  # type: ignore[union-attr]
                completion = [{"role": "assistant", "content": j.text}]
                rows.append({"index": index, "id": e.id, "sample": number, "prompt": prompt, "completion": completion})
                correct += is_correct(j.scores, e.truth)
        return rows, correct / max(len(rows), 1)

    def stage_sft(self) -> None:
        from grm.jsonl import JsonlWriter
        from grm.training.rft import RFTConfig, train_sft

        examples = [synthetic.SyntheticExample(**row) for row in read_jsonl(self.data("sft"))]
        rows, accuracy = self.teacher_rows(examples, samples=self.config.teacher_samples)
        path = self.out / "sft_data" / "sft.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        with JsonlWriter(path) as writer:
            for row in rows:
                writer.write(row)
        stats = {"traces": len(rows), "teacher_accuracy": accuracy}
        (path.parent / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        logger.info("teacher traces: %s", stats)
        config = self.stage_config(
            RFTConfig,
            self.config.sft_config,
            model_name_or_path=str(self.model("init")),
            data_path=str(self.data("sft")),
            output_dir=str(self.model("sft")),
            seed=self.config.seed,
        )
        train_sft(config, path)

    def stage_rft(self) -> None:
        from grm.training.rft import RFTConfig, run_rft

        config = self.stage_config(
            RFTConfig,
            self.config.rft_config,
            model_name_or_path=str(self.model("sft")),
            data_path=str(self.data("rft")),
            output_dir=str(self.model("rft")),
            sample_max_new_tokens=self.config.max_new_tokens,
            sample_backend_kwargs={"batch_size": self.config.batch_size, "progress": False},
            seed=self.config.seed,
        )
        run_rft(config)

    def grpo_stage_config(self):
        """The GRPO stage's :class:`~grm.training.grpo.SPCTGRPOConfig`: ``grpo_config`` with the pipeline's paths
        (its curves on the validation set)."""
        from grm.training.grpo import SPCTGRPOConfig

        return self.stage_config(
            SPCTGRPOConfig,
            self.config.grpo_config,
            model_name_or_path=str(self.model("rft")),
            data_path=str(self.data("grpo")),
            output_dir=str(self.model("grpo")),
            max_completion_length=self.config.max_new_tokens,
            curve_data=str(self.data("validation")),
            seed=self.config.seed,
        )

    def stage_grpo(self) -> None:
        from grm.training.grpo import run_grpo

        run_grpo(self.grpo_stage_config())

    def stage_meta_rm(self) -> None:
        from grm.training.meta_rm import MetaRMConfig, build_dataset, train

        examples = [synthetic.SyntheticExample(**row) for row in read_jsonl(self.data("meta_rm"))]
        path = self.out / "meta_rm_data" / "judgements.jsonl"
        build_dataset(
            self.load_grm("grpo"),
            examples,
            path,
            k=self.config.meta_rm_k,
            chunk_size=max(1, self.config.batch_size // self.config.meta_rm_k) * 4,
            seed=self.config.seed,
        )
        config = self.stage_config(
            MetaRMConfig,
            self.config.meta_rm_config,
            model_name_or_path=str(self.meta_rm_start()),
            train_file=str(path),
            output_dir=str(self.model("meta_rm")),
            template=synthetic.TEMPLATE,
            max_length=self.config.max_positions,
            seed=self.config.seed,
        )
        train(config)

    def meta_rm_start(self) -> Path:
        """The model the meta RM starts from: the GRPO model, or with ``meta_rm_hidden_size`` a fresh model of that
        width (heads of the GRM's head size, ``meta_rm_layers`` layers) on the GRM's tokenizer, in ``meta_rm_init``."""
        from transformers import AutoTokenizer

        c = self.config
        if not c.meta_rm_hidden_size:
            return self.model("grpo")
        head = c.hidden_size // c.num_heads
        size = (c.meta_rm_hidden_size, c.meta_rm_layers or c.num_layers, c.meta_rm_hidden_size // head)
        tokenizer = AutoTokenizer.from_pretrained(self.model("grpo"))
        model = self.new_model(tokenizer, *size, 3 * c.meta_rm_hidden_size, self.model("meta_rm_init"))
        logger.info("meta RM: a fresh model of %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
        return self.model("meta_rm_init")

    def eval_k(self, name: str) -> int:
        """Judgements sampled per held-out item of a model: ``eval_k`` for the shipped one, else ``eval_stage_k``."""
        return self.config.eval_k if name in (MODELS[-1], "teacher") else self.config.eval_stage_k

    def stage_eval(self) -> None:
        from grm.eval import evaluate, write_report
        from grm.meta_rm import MetaRM
        from grm.model import GRM

        c = self.config
        data = self.data("test")
        meta = MetaRM.from_pretrained(self.model("meta_rm"), batch_size=c.batch_size, progress=False)
        common = dict(seed=c.test_seed, draws=c.eval_draws, n_bootstrap=c.eval_bootstrap, chunk_size=256)
        for name in MODELS:
            rm = self.load_grm(name)
            greedy = evaluate("synthetic", data, rm, k=1, cache=self.eval_dir(name, "greedy") / "cache.jsonl", **common)
            write_report(greedy, self.eval_dir(name, "greedy"))
            k = self.eval_k(name)
            rated = {"meta_rm": meta, "k_meta": k // 2} if name == MODELS[-1] else {}  # the meta RM rates its model
            sampled = evaluate(
                "synthetic", data, rm, k=k, cache=self.eval_dir(name, "sampled") / "cache.jsonl", **rated, **common
            )
            write_report(sampled, self.eval_dir(name, "sampled"))
            logger.info(
                "%s: greedy %.3f, Voting@%d %.3f", name, greedy.headline, k, sampled.scores["voting"]["overall"]
            )
        teacher = GRM(synthetic.Teacher(c.teacher_error_rate, c.test_seed), self.template)
        result = evaluate("synthetic", data, teacher, k=c.eval_k, progress=False, **common)
        write_report(result, self.eval_dir("teacher", "sampled"))

    def stage_report(self) -> None:
        from grm.training.default_grm_report import write

        write(self, Path(self.config.report_dir))

    def stage_ship(self) -> None:
        for name, target in (("grpo", "default_grm"), ("meta_rm", "default_meta_rm")):
            source, dest = self.model(name), self.ship_dir / target
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for f in sorted(source.iterdir()):
                if f.is_file() and f.name not in SHIPPED_SKIP and not f.name.startswith("eval_"):
                    shutil.copy2(f, dest / f.name)
            size = sum(f.stat().st_size for f in dest.iterdir())
            logger.info("shipped %s to %s (%.1f MB)", source, dest, size / 1e6)


def run(config: DefaultGRMConfig) -> dict[str, Any]:
    """Run the pipeline; return the status (seconds per stage)."""
    return Pipeline(config).run()


def main(argv: Sequence[str] | None = None) -> int:
    """``grm train default-grm --config FILE.yaml [--flags]`` (or ``python -m grm.training.default_grm ...``)."""
    run(parse_config(DefaultGRMConfig, argv, prog="grm train default-grm"))
    return 0


if __name__ == "__main__":
    from grm.progress import setup_console

    setup_console()
    sys.exit(main())
