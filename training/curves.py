"""Learning curves of a GRM while it trains: what the online RL stage optimizes, measured where it counts.

:func:`measure` scores a fixed set of labelled examples with a GRM and returns the mean rule reward of its sampled
judgements (+1 correct by SPCT's rule, -1 not: what GRPO optimizes, without a rule hook's term) and its accuracy:
``greedy`` (one judgement at temperature 0), ``voting@1`` and ``voting@k`` (the mean over the disjoint runs of the
``k`` samples, ties among t responses worth 1/t). :class:`CurveCallback` calls it every ``every`` training steps
on the model being trained, on held-out (validation) examples and on a fixed subset of the training examples, and
appends one JSON row per step to ``curves.jsonl``: the two rewards say whether the policy learns or only fits its
prompts, the accuracies whether the gain reaches what a user of the GRM sees. Every point scores the same items
with the same seed, so two points differ by what the model learned, not by a fresh draw.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grm.jsonl import JsonlWriter, load_finished
from grm.rule import best_index, is_correct
from grm.scoring import SAMPLING_TEMPERATURE, ScoringOptions
from grm.training.rules import Rule, passes
from grm.types import Example

logger = logging.getLogger(__name__)


def vote_accuracy(judged: Sequence[Sequence[float] | None], truth: Sequence[float]) -> float:
    """Worth of the summed scores of ``judged`` (each in the item's response order; None: unreadable) against
    ``truth``: 1 when the truly best response alone has the most, ``1/t`` when it ties with ``t - 1`` others, else
    0. A lone response (no choice to make) is worth 1 when the vote's mean score equals its truth."""
    valid = [s for s in judged if s is not None and len(s) == len(truth)]
    if len(truth) == 1:
        return float(bool(valid) and sum(s[0] for s in valid) / len(valid) == truth[0])
    totals = [sum(s[i] for s in valid) for i in range(len(truth))]
    top = max(totals)
    tied = [i for i, t in enumerate(totals) if t == top]
    return 1.0 / len(tied) if best_index(truth) in tied else 0.0


def measure(
    rm: Any,
    examples: Sequence[Example],
    *,
    k: int = 8,
    seed: int = 0,
    temperature: float | None = None,
    greedy: bool = True,
    rule: Rule | None = None,
) -> dict[str, float]:
    """The mean rule reward and accuracy of ``rm`` (a :class:`grm.GRM`) on labelled ``examples``.

    ``k`` judgements per example are sampled at ``temperature`` (default grm's voting temperature), each example
    seeded by ``seed`` and its position: ``reward`` is their mean rule reward, ``voting@1`` and ``voting@{k}`` their
    accuracy (:func:`vote_accuracy`), and with ``greedy`` one greedy judgement gives ``greedy``. With a ``rule``,
    ``rule_pass`` is the share of the sampled judgements that pass it.
    """
    if not examples:
        raise ValueError("measure needs at least one labelled example")
    t = SAMPLING_TEMPERATURE if temperature is None else temperature
    keys = list(range(len(examples)))
    sampled = rm.score_batch(examples, ScoringOptions(k=k, seed=seed, temperature=t), keys=keys)
    out: dict[str, float] = {}
    judgements = [(j, e) for r, e in zip(sampled, examples) for j in r.judgements]
    out["reward"] = sum(1.0 if is_correct(j.scores, e.truth) else -1.0 for j, e in judgements) / len(judgements)
    if rule is not None:
        out["rule_pass"] = sum(passes(rule, j, e) for j, e in judgements) / len(judgements)
    scores = [[j.scores for j in r.judgements] for r in sampled]
    for size in sorted({1, k}):
        worth = [
            sum(vote_accuracy(s[i : i + size], e.truth) for i in range(0, len(s) - size + 1, size)) / (len(s) // size)
            for s, e in zip(scores, examples)
        ]
        out[f"voting@{size}"] = sum(worth) / len(worth)
    if greedy:
        best = rm.score_batch(examples, ScoringOptions(k=1, seed=seed, temperature=0.0), keys=keys)
        accuracy = sum(vote_accuracy([r.judgements[0].scores], e.truth) for r, e in zip(best, examples))
        out = {"greedy": accuracy / len(examples)} | out
    return out


class CurveCallback(TrainerCallback):
    """Every ``every`` steps (and before the first), :func:`measure` the model in training on ``heldout`` examples
    (reward and accuracy) and on ``train`` examples (reward only), and append a row to ``path``.

    A row: ``step``, ``heldout_reward``, ``train_reward``, ``greedy``, ``voting@1``, ``voting@{k}`` (with a rule
    also ``heldout_rule_pass``) and ``seconds`` spent measuring. ``make_grm(model)`` wraps the training model in a
    GRM for the measurement (its train/eval mode is restored after). Steps already in ``path`` are not measured
    again, so a resumed run continues its curve.
    """

    def __init__(
        self,
        path: str | Path,
        make_grm: Callable[[Any], Any],
        heldout: Sequence[Example],
        train: Sequence[Example],
        *,
        every: int,
        k: int = 8,
        seed: int = 0,
        rule: Rule | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1 step, got {every}")
        self.path, self.make_grm, self.heldout, self.train = Path(path), make_grm, list(heldout), list(train)
        self.every, self.k, self.seed, self.rule = every, k, seed, rule

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.point(state.global_step, model)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.point(state.global_step, model)

    def point(self, step: int, model: Any) -> dict[str, Any] | None:
        """Measure ``model`` at ``step`` and append the row (None if the curve has it already)."""
        if model is None or step in load_finished(self.path, "step"):
            return None
        start, training = time.monotonic(), model.training
        try:
            rm = self.make_grm(model)
            heldout = measure(rm, self.heldout, k=self.k, seed=self.seed, rule=self.rule)
            row: dict[str, Any] = {"step": step, "heldout_reward": heldout.pop("reward")}
            if self.train:
                row["train_reward"] = measure(rm, self.train, k=self.k, seed=self.seed, greedy=False)["reward"]
            if "rule_pass" in heldout:
                row["heldout_rule_pass"] = heldout.pop("rule_pass")
            row |= heldout
        finally:
            model.train(training)
        row["seconds"] = round(time.monotonic() - start, 1)
        with JsonlWriter(self.path) as writer:
            writer.write(row)
        logger.info("curve: %s", {key: round(v, 3) if isinstance(v, float) else v for key, v in row.items()})
        return row


def table(runs: Sequence[str | Path]) -> str:
    """The curves of training runs (folders holding ``curves.jsonl``) as one markdown table, a row per point."""
    out = []
    for run in runs:
        rows = sorted(load_finished(Path(run) / "curves.jsonl", "step").values(), key=lambda r: r["step"])
        if not rows:
            raise ValueError(f"{run}: no curves.jsonl (train with curve_every > 0)")
        if not out:
            keys = [key for key in rows[0] if key not in ("step", "seconds")]
            out += ["| run | step | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
        for r in rows:
            cells = [_cell(key, r.get(key)) for key in keys]
            out.append(f"| {Path(run).name} | {r['step']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _cell(key: str, value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:+.3f}" if "reward" in key else f"{100 * value:.1f}"


if __name__ == "__main__":  # python -m grm.training.curves RUN_DIR... : the runs' curves as a markdown table
    import sys

    print(table(sys.argv[1:]))
