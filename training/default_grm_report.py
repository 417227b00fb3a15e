"""The report of a ``grm train default-grm`` run: ``default_grm.md`` and ``default_grm.png``.

Everything in it is read from the run's folder (evaluation results, training statistics, learning curves, stage
timings), so ``grm train default-grm --config ... --stages report`` rewrites it without training or evaluating
anything. The pipeline (:mod:`grm.training.default_grm`) calls this module, never the other way round: what the
report needs of a run comes with the ``pipeline`` object it is given.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from grm.metrics import Estimate, mean_interval, paired_difference
from grm.rule import is_correct
from grm.scoring import SAMPLING_TEMPERATURE
from grm.training.common import read_jsonl
from grm.training.curves import vote_accuracy
from grm.training.synthetic import KINDS

Pipeline = Any
"""A :class:`grm.training.default_grm.Pipeline` (its folders, config, status and stage names)."""

NAMES = {"teacher": "teacher (rule-based)", "sft": "SFT", "rft": "SFT + RFT", "grpo": "SFT + RFT + GRPO (shipped)"}
COLORS = {"teacher": "0.6", "sft": "tab:blue", "rft": "tab:orange", "grpo": "tab:green"}
TABLE_K = (1, 2, 4, 8, 16, 32)
REWARD = "mean rule reward"
"""Per item, the mean over its sampled judgements of SPCT's reward (+1 correct, -1 not): what GRPO optimizes."""
ATTEMPTS = "default_grm_attempts.md"
"""The hand-written record, beside the report, of what was tried to reach the paper's shape and what it measured."""


def write(pipeline: Pipeline, report_dir: Path) -> Path:
    """Write ``default_grm.md`` and ``default_grm.png`` into ``report_dir``; return the markdown's path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in ("teacher", *pipeline.models):
        results[name] = {"sampled": _load(pipeline.eval_dir(name, "sampled"))}
        if name != "teacher":
            results[name]["greedy"] = _load(pipeline.eval_dir(name, "greedy"))
    plot = report_dir / "default_grm.png"
    _plot(results, plot, pipeline.config.eval_k)
    path = report_dir / "default_grm.md"
    attempts = (report_dir / ATTEMPTS).is_file()
    path.write_text(_markdown(pipeline, results, item_values(pipeline), plot.name, attempts), encoding="utf-8")
    return path


def item_values(pipeline: Pipeline) -> dict[str, dict[str, np.ndarray]]:
    """Per model, per measure (``greedy``, ``Voting@k``, ``MetaRM@k``), each test item's accuracy, in the
    test file's order: the same items for every model, so stages compare item by item.

    An item's votes are the sums of its judgements' scores; it is worth 1 when the right response alone has the
    most, ``1/t`` when it ties with ``t - 1`` others (a coin toss), else 0. Voting@k of a model with ``K`` samples
    per item is the mean over the ``K // k`` disjoint runs of k samples; MetaRM@k keeps the k/2 judgements of each
    run its meta RM rates highest; Consistent@K votes only the K judgements that do not contradict themselves
    (:func:`grm.training.synthetic.contradicts`; all of them when every one does): a selection rule a meta RM could
    learn, as a yardstick.
    """
    from grm.training.synthetic import contradicts

    truth = {row["id"]: row["truth"] for row in read_jsonl(pipeline.data("test"))}
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in pipeline.models:
        greedy = _cached(pipeline.eval_dir(name, "greedy") / "cache.jsonl")
        sampled = _cached(pipeline.eval_dir(name, "sampled") / "cache.jsonl")
        values: dict[str, list[float]] = {
            "greedy": [vote_accuracy([j["scores"] for j in greedy[i]["judgements"]], t) for i, t in truth.items()]
        }
        n = pipeline.eval_k(name)
        meta = all(sampled[i].get("meta_scores") for i in truth)
        scores = {i: [j["scores"] for j in sampled[i]["judgements"]] for i in truth}
        for k in [k for k in TABLE_K if k <= n]:
            runs = {i: [range(r * k, (r + 1) * k) for r in range(len(scores[i]) // k)] for i in truth}
            values[f"Voting@{k}"] = [_mean_vote(scores[i], runs[i], t) for i, t in truth.items()]
            if meta and k >= 2:
                kept = {
                    i: [sorted(run, key=lambda s: -sampled[i]["meta_scores"][s])[: k // 2] for run in runs[i]]
                    for i in truth
                }
                values[f"MetaRM@{k}"] = [_mean_vote(scores[i], kept[i], t) for i, t in truth.items()]
        values[REWARD] = [
            float(np.mean([1.0 if is_correct(x, t) else -1.0 for x in scores[i]])) for i, t in truth.items()
        ]
        runs = {i: [range(n)] for i in truth}
        odd = {i: [contradicts(j["text"] or "") for j in sampled[i]["judgements"]] for i in truth}
        sane = {i: [[s for s in run if not odd[i][s]] or list(run) for run in runs[i]] for i in truth}
        values[f"Consistent@{n}"] = [_mean_vote(scores[i], sane[i], t) for i, t in truth.items()]
        out[name] = {key: np.asarray(v) for key, v in values.items()}
    return out


def _cached(path: Path) -> dict[str, dict[str, Any]]:
    """An evaluation cache's rewards by item id."""
    from grm.jsonl import read_rows

    return {row["id"]: row["reward"] for _, row, _ in read_rows(path) if row is not None}


def _mean_vote(scores: list[list[float] | None], runs: list[Any], truth: list[float]) -> float:
    """The mean worth of the votes of each run (a sequence of sample numbers into ``scores``)."""
    return float(np.mean([vote_accuracy([scores[s] for s in run], truth) for run in runs]))


def _load(folder: Path) -> dict[str, Any]:
    file = folder / "result.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: run the eval stage first")
    return json.loads(file.read_text(encoding="utf-8"))


def _curve(result: dict[str, Any], mode: str, key: str = "overall") -> dict[int, float]:
    return {int(k): _num(v.get(key)) for k, v in result["curves"].get(mode, {}).items()}


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}"


def _plot(results: dict[str, dict[str, Any]], path: Path, k_max: int) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), dpi=110)
    ax = fig.subplots()
    for name, r in results.items():
        color = COLORS[name]
        voting = _curve(r["sampled"], "voting")
        ks = sorted(voting)
        ax.plot(ks, [100 * voting[k] for k in ks], "-", color=color, label=f"{NAMES[name]}: Voting@k")
        if "metarm" in r["sampled"]["curves"]:
            meta = _curve(r["sampled"], "metarm")
            ax.plot(ks, [100 * meta[k] for k in ks], "--", color=color, label=f"{NAMES[name]}: MetaRM@k")
        if "greedy" in r:
            greedy = 100 * _num(r["greedy"]["scores"]["voting"]["overall"])
            ax.plot([1], [greedy], "*", color=color, markersize=11, label=f"{NAMES[name]}: greedy")
    ax.set_xscale("log", base=2)
    ax.set_xticks([k for k in TABLE_K if k <= k_max])
    ax.set_xticklabels([str(k) for k in TABLE_K if k <= k_max])
    ax.set_xlabel("k (judgements sampled per item)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Default GRM on the synthetic task (test seed)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, format="png")


def _markdown(
    pipeline: Pipeline,
    results: dict[str, dict[str, Any]],
    values: dict[str, dict[str, np.ndarray]],
    plot_name: str,
    attempts: bool,
) -> str:
    models, stages = pipeline.models, pipeline.stages
    c = pipeline.config
    status = pipeline.status()
    init = json.loads((pipeline.model("init") / "config.json").read_text(encoding="utf-8"))
    n_params = _param_count(pipeline.model("grpo"))
    boot = {"n_bootstrap": max(c.eval_bootstrap, 1), "seed": c.test_seed}
    n_items = len(values[models[-1]]["greedy"])
    lines = [
        "# The default GRM: trained from scratch with grm's SPCT pipeline on a CPU",
        "",
        "Regenerate everything (training, evaluation, this report, the shipped weights) with "
        "`grm train default-grm --config training/configs/default_grm.yaml`; this report alone with "
        "`grm train default-grm --config training/configs/default_grm.yaml --stages report`.",
        "",
        f"**Task**: the synthetic judging task (`grm.training.synthetic`): {', '.join(KINDS)} questions with 1-4 "
        f"candidate answers, exactly one right when there are several. **Teacher**: rule-based, wrong on "
        f"{_pct(c.teacher_error_rate)}% of its judgements by construction. **Model**: a Qwen2 with "
        f"{init['num_hidden_layers']} layers, hidden size {init['hidden_size']}, "
        f"{init['num_attention_heads']} attention heads, {init['vocab_size']} tokens "
        f"(own BPE tokenizer), {n_params / 1e6:.2f}M parameters. **Test set**: {n_items} items of 2-4 responses, "
        f"seed {c.test_seed}, drawn once and used for the numbers of this report only, the same items for every "
        f"model (training used seeds {c.seed}..{c.seed + 4}); {_overlap(pipeline)} **Validation set**: seed "
        f"{c.validation_seed}, on which the settings were chosen (GRPO's learning curves below, and the attempts "
        "record).",
        "",
        "Accuracy: an item is right when the right response alone has the most votes (the sum of its judgements' "
        "scores); a tie among t responses counts 1/t. Greedy is one judgement at temperature 0. Voting@k is the "
        f"mean over disjoint runs of k of the sampled judgements (temperature {SAMPLING_TEMPERATURE}; {c.eval_k} per "
        "item for the "
        f"shipped model, {c.eval_stage_k} for the earlier stages); MetaRM@k keeps the k/2 judgements of a run the "
        "meta RM rates highest. Intervals are 95% percentile bootstraps over items "
        f"({max(c.eval_bootstrap, 1)} resamples); a difference between two models is measured on the same items "
        "(paired bootstrap) and called significant when its interval excludes 0.",
        "",
        *_shape(values, c.eval_k, c.eval_stage_k, boot, _parse_failure_share(results[models[-1]])),
        "",
        "## Results (test accuracy, %, with 95% intervals)",
        "",
    ]
    measures = ["greedy", *(f"Voting@{k}" for k in TABLE_K), *(f"MetaRM@{k}" for k in TABLE_K)]
    measures = [m for m in measures if any(m in v for v in values.values())]
    lines += ["| model | " + " | ".join(measures) + " | parse failures (sampled) |", "|---" * (len(measures) + 2) + "|"]
    for name in models:
        cells = [_with_interval(mean_interval(values[name][m], **boot)) if m in values[name] else "" for m in measures]
        lines.append(f"| {NAMES[name]} | " + " | ".join(cells) + f" | {_failures(results[name]['sampled'])} |")
    teacher = _curve(results["teacher"]["sampled"], "voting")
    lines += [
        "",
        f"The teacher (not a model; its errors are independent by construction): Voting@1 {_pct(teacher[1])}, "
        f"Voting@{c.eval_k} {_pct(teacher[c.eval_k])} (the evaluation's own draws).",
        "",
        "## Stage against stage (paired, same items)",
        "",
        "The mean rule reward (what GRPO optimizes: +1 for a correct sampled judgement, -1 otherwise, averaged over an "
        "item's samples) is in reward units, the other measures in points.",
        "",
        "| change | measure | before | after | difference | 95% interval | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for before, after in (("sft", "rft"), ("rft", "grpo"), ("sft", "grpo")):
        for m in (*_stage_measures(c.eval_stage_k), REWARD):
            d = paired_difference(values[before][m], values[after][m], **boot)
            a, b = values[before][m].mean(), values[after][m].mean()
            if m == REWARD:  # in reward units (-1..+1), not points
                cells = f"{a:+.3f} | {b:+.3f} | {d.mean:+.3f} | [{d.low:+.3f}, {d.high:+.3f}]"
            else:
                cells = f"{_pct(a)} | {_pct(b)} | {100 * d.mean:+.1f} | [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
            lines.append(f"| {NAMES[before]} -> {NAMES[after]} | {m} | {cells} | {_verdict(d)} |")
    lines += ["", f"![Voting@k and MetaRM@k]({plot_name})", "", "## By kind of question", ""]
    lines += [
        "(The evaluation's own figures: Voting@k and MetaRM@k averaged over random draws of k, ties broken at random.)",
        "",
        "| model | kind | greedy | Voting@1 | Voting@k (k: the model's samples) | MetaRM@k |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        k = pipeline.eval_k(name)
        for kind in KINDS:
            key = f"subsets/{kind}"
            greedy = _pct(_num(r["greedy"]["scores"]["voting"].get(key))) if "greedy" in r else "n/a"
            v1 = _pct(_curve(r["sampled"], "voting", key).get(1, math.nan))
            vk = _pct(_curve(r["sampled"], "voting", key).get(k, math.nan))
            mk = _pct(_curve(r["sampled"], "metarm", key).get(k, math.nan))
            lines.append(f"| {NAMES[name]} | {kind} | {greedy} | {v1} | {vk} (k={k}) | {mk} |")
    lines += ["", "## What helped, what did not", "", *_findings(pipeline, values, boot), ""]
    if attempts:
        lines += [
            f"What was tried to reach the paper's shape, with each attempt's numbers: [{ATTEMPTS}]({ATTEMPTS}).",
            "",
        ]
    lines += ["## Training", "", *_training(pipeline), ""]
    lines += _curves(pipeline)
    lines += [
        "## Time (wall clock, this machine)",
        "",
        f"| stage | seconds | load ({os.cpu_count()} cores; 15-min load average at the stage's end) |",
        "|---|---|---|",
    ]
    timed = [s for s in stages[: stages.index("eval") + 1] if s in status]  # report and ship take no time
    for stage in timed:
        lines.append(f"| {stage} | {status[stage].get('seconds', 'n/a')} | {status[stage].get('load', 'n/a')} |")
    total = sum(status[s].get("seconds", 0) for s in timed)
    lines += [
        f"| **total** | **{total:.0f}** ({total / 60:.1f} min) | |",
        "",
        "A load above the core count means other jobs shared the machine and the stage took longer than it would "
        "alone.",
        "",
    ]
    threads = sorted({status[s]["threads"] for s in timed if "threads" in status[s]})
    lines += [
        f"Torch threads: {', '.join(map(str, threads)) or 'not recorded'} (`torch_threads: {c.torch_threads}`; "
        "0 is torch's default, one per core).",
        "",
        "## Shipped weights",
        "",
        *_sizes(pipeline),
        "",
    ]
    return "\n".join(lines)


def _failures(result: dict[str, Any]) -> str:
    n = result["n_judgements"]
    return f"{100 * result['n_invalid'] / n:.1f}% ({result['n_invalid']}/{n})" if n else "n/a"


def _overlap(pipeline: Pipeline) -> str:
    """How many test questions also occur, word for word, in a training set."""
    seen = {row["query"] for split in pipeline.splits for row in read_jsonl(pipeline.data(split))}
    held = read_jsonl(pipeline.data("test"))
    by_kind = {kind: [r["query"] in seen for r in held if r["kind"] == kind] for kind in KINDS}
    parts = [f"{kind} {_pct(sum(v) / len(v))}%" for kind, v in by_kind.items() if v]
    total = sum(sum(v) for v in by_kind.values()) / max(len(held), 1)
    return (
        f"{_pct(total)}% of the test questions also occur in the training data ({', '.join(parts)}; the "
        "candidate answers, their number and order are drawn afresh, and there are only 54 conversion questions)."
    )


def _findings(pipeline: Pipeline, values: dict[str, dict[str, np.ndarray]], boot: dict[str, int]) -> list[str]:
    out = []
    rft_set = pipeline.model("rft") / "rft_data" / "sft.jsonl"
    if rft_set.is_file():
        out.append(
            f"- SPCT's rejection checks only the scores: {_pct(1 - _faithful_share(rft_set))}% of the judgements RFT "
            "kept reach them through a wrong result or analysis (two mistakes that cancel), which RFT then teaches."
        )
    pooled, within, mixed = _meta_discrimination(pipeline, "grpo")
    if mixed:
        out.append(
            f"- The meta RM on the shipped model's test samples: AUC {pooled:.2f} over all judgements pooled, "
            f"{within:.2f} within an item (mean over the {mixed} items with both correct and incorrect judgements). "
            "MetaRM@k chooses among one item's judgements, so the within-item figure is the one that counts: a "
            "pooled AUC well above it means the meta RM learned which questions are hard more than which judgement "
            "of a question is right."
        )
    contradictions = _contradictions(pipeline, "grpo")
    k = pipeline.eval_k("grpo")
    if contradictions is not None and f"Consistent@{k}" in values["grpo"]:
        shipped = values["grpo"]
        d = paired_difference(shipped[f"Voting@{k}"], shipped[f"Consistent@{k}"], **boot)
        out.append(
            f"- {_pct(contradictions)}% of the shipped model's sampled judgements contradict themselves (an analysis "
            'verdict against its own comparison, "42 vs 42: wrong", or against the scores it then gives). Voting '
            f"only the judgements that do not (Consistent@{k}) scores {_pct(shipped[f'Consistent@{k}'].mean())}, "
            f"{_diff(d)} against Voting@{k}"
            + (
                ": the signal a meta RM needs is in the judgements' text; a meta RM that learned this one rule would "
                "gain that much over voting."
                if d.low > 0
                else ": a rule that only drops self-contradicting judgements is no better a selector than voting here."
            )
        )
    for name in ("sft", "rft", "grpo"):
        mean, majority = _sample_accuracy(pipeline, name)
        out.append(
            f"- {NAMES[name]}: {_pct(mean)}% of its sampled judgements are correct, and on {_pct(majority)}% of the "
            "items most of them are: voting approaches the latter as k grows, since an error a model makes in most "
            "samples of an item (the same wrong sum every time) cannot be voted away."
        )
    return out


def _stage_measures(stage_k: int) -> tuple[str, ...]:
    """The measures every model has, on which stages are compared."""
    return ("greedy", "Voting@1", f"Voting@{stage_k}")


def _shape(
    values: dict[str, dict[str, np.ndarray]], k: int, stage_k: int, boot: dict[str, int], failures: float
) -> list[str]:
    """The paper's shape, criterion by criterion, for the shipped model, with what this run measured (stages
    compared on the measures they share)."""
    shipped = values["grpo"]
    voting, greedy = shipped.get(f"Voting@{k}"), shipped["greedy"]
    rows = []
    if voting is not None:
        d = paired_difference(greedy, voting, **boot)
        rows.append((f"Voting@{k} >= greedy + 5 points", _diff(d), d.mean >= 0.05))
        d = paired_difference(shipped["Voting@1"], voting, **boot)
        rows.append((f"Voting@{k} >= Voting@1 + 5 points", _diff(d), d.mean >= 0.05))
        curve = [shipped[f"Voting@{j}"].mean() for j in TABLE_K if f"Voting@{j}" in shipped]
        rising = all(b >= a for a, b in zip(curve, curve[1:]))
        rows.append(("Voting@k rises with k", " -> ".join(_pct(x) for x in curve), rising))
    meta = shipped.get(f"MetaRM@{k}")
    if meta is not None and voting is not None:
        d = paired_difference(voting, meta, **boot)
        rows.append((f"MetaRM@{k} >= Voting@{k} + 3 points", _diff(d), d.mean >= 0.03))
    for before, after in (("sft", "rft"), ("rft", "grpo")):
        worse = [
            m
            for m in _stage_measures(stage_k)
            if paired_difference(values[before][m], values[after][m], **boot).high < 0
        ]
        rows.append(
            (
                f"{NAMES[after]} not significantly worse than {NAMES[before]}",
                ", ".join(worse) + " worse" if worse else "none worse",
                not worse,
            )
        )
    improved = [m for m in _stage_measures(stage_k) if paired_difference(values["rft"][m], shipped[m], **boot).low > 0]
    rows.append(
        (
            f"{NAMES['grpo']} significantly better than {NAMES['rft']} ({', '.join(_stage_measures(stage_k))})",
            ", ".join(improved) + " better" if improved else "none better",
            bool(improved),
        )
    )
    d = paired_difference(values["rft"][REWARD], shipped[REWARD], **boot)
    rows.append(
        (
            "GRPO raises the mean rule reward on the test prompts",
            f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]",
            d.low > 0,
        )
    )
    if stage_k > 1 and f"Voting@{stage_k}" in shipped:
        d = paired_difference(shipped["Voting@1"], shipped[f"Voting@{stage_k}"], **boot)
        rows.append((f"Voting@{stage_k} > Voting@1 (shipped, paired)", _diff(d), d.low > 0))
    better = [
        f"{NAMES[name]} {m}"
        for name in ("rft", "grpo")
        for m in _stage_measures(stage_k)
        if paired_difference(values["sft"][m], values[name][m], **boot).low > 0
    ]
    rows.append(
        (
            f"RFT or GRPO significantly better than SFT ({', '.join(_stage_measures(stage_k))})",
            ", ".join(better) or "neither",
            bool(better),
        )
    )
    rows.append(("parse failures < 1% (shipped, sampled)", f"{_pct(failures)}%", failures < 0.01))
    out = ["## The paper's shape, for the shipped model", "", "| criterion | measured | met |", "|---|---|---|"]
    out += [f"| {what} | {measured} | {'yes' if ok else '**no**'} |" for what, measured, ok in rows]
    return out


def _diff(d: Estimate) -> str:
    return f"{100 * d.mean:+.1f} points [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"


def _verdict(d: Estimate) -> str:
    return ("significantly better" if d.low > 0 else "significantly worse") if d.significant else "within noise"


def _with_interval(e: Estimate) -> str:
    return f"{_pct(e.mean)} [{_pct(e.low)}, {_pct(e.high)}]"


def _parse_failure_share(result: dict[str, Any]) -> float:
    sampled = result["sampled"]
    return sampled["n_invalid"] / sampled["n_judgements"] if sampled["n_judgements"] else math.nan


def _contradictions(pipeline: Pipeline, name: str) -> float | None:
    """Share of a model's sampled test judgements whose analysis contradicts their scores (None: no samples)."""
    from grm.training.synthetic import contradicts

    flags = []
    for _, row in _cached(pipeline.eval_dir(name, "sampled") / "cache.jsonl").items():
        for j in row["judgements"]:
            if j.get("scores") is not None:
                flags.append(contradicts(j["text"]))
    return sum(flags) / len(flags) if flags else None


def _judged_samples(pipeline: Pipeline, name: str) -> list[tuple[list[float], list[float] | None]]:
    """Per test item, a model's sampled judgements labelled 1.0 (correct by SPCT's rule) or 0.0, and the meta
    RM's scores of them (None when the evaluation had no meta RM)."""
    truth = {row["id"]: row["truth"] for row in read_jsonl(pipeline.data("test"))}
    out = []
    for item, reward in _cached(pipeline.eval_dir(name, "sampled") / "cache.jsonl").items():
        if item in truth:
            labels = [float(is_correct(j["scores"], truth[item])) for j in reward["judgements"]]
            out.append((labels, reward.get("meta_scores")))
    return out


def _sample_accuracy(pipeline: Pipeline, name: str) -> tuple[float, float]:
    """Share of a model's sampled test judgements that are correct (SPCT's rule), and share of items on which
    more than half of them are."""
    shares = [sum(labels) / len(labels) for labels, _ in _judged_samples(pipeline, name)]
    if not shares:
        return math.nan, math.nan
    return sum(shares) / len(shares), sum(s > 0.5 for s in shares) / len(shares)


def _meta_discrimination(pipeline: Pipeline, name: str) -> tuple[float, float, int]:
    """The meta RM's ROC-AUC on a model's sampled test judgements: pooled, the mean within items, and how many
    items have both correct and incorrect judgements (0: nothing to measure)."""
    from grm.metrics import roc_auc

    pooled_labels, pooled_scores, within = [], [], []
    for labels, meta in _judged_samples(pipeline, name):
        if not meta:
            continue
        pooled_labels += labels
        pooled_scores += meta
        if 0 < sum(labels) < len(labels):
            within.append(roc_auc(labels, meta))
    if not within:
        return math.nan, math.nan, 0
    return roc_auc(pooled_labels, pooled_scores), sum(within) / len(within), len(within)


def _training(pipeline: Pipeline) -> list[str]:
    out = []
    sft_stats = pipeline.out / "sft_data" / "stats.json"
    if sft_stats.is_file():
        s = json.loads(sft_stats.read_text(encoding="utf-8"))
        out.append(f"- SFT warm start: {s['traces']} teacher traces, {_pct(s['teacher_accuracy'])}% of them correct.")
        out.append(f"  {_train_log(pipeline.model('sft'))}")
    rft_stats = pipeline.model("rft") / "rft_data" / "stats.json"
    if rft_stats.is_file():
        s = json.loads(rft_stats.read_text(encoding="utf-8"))
        out.append(
            f"- RFT: {s['examples']} examples x {s['judgements'] // max(s['examples'], 1)} samples; "
            f"{_pct(s['correct'] / max(s['judgements'], 1))}% of samples correct, {s['unparseable']} unparseable; "
            f"examples kept {s['kept']}, too easy (all correct) {s['too_easy']}, all incorrect {s['all_incorrect']}; "
            f"hinted samples {s['hinted']} ({s['hinted_correct']} correct); {s['sft_rows']} SFT rows."
        )
        faithful = _faithful_share(pipeline.model("rft") / "rft_data" / "sft.jsonl")
        out.append(
            f"  {_pct(faithful)}% of the kept judgements are exactly the error-free teacher's judgement; the rest "
            "have right scores but a wrong result or analysis (rejection checks only the scores)."
        )
        out.append(f"  {_train_log(pipeline.model('rft'))}")
    grpo_state = _trainer_state(pipeline.model("grpo"))
    if grpo_state:
        rewards = [h["rewards/spct_reward/mean"] for h in grpo_state if "rewards/spct_reward/mean" in h]
        kls = [h["kl"] for h in grpo_state if "kl" in h]
        if rewards:
            n = max(1, len(rewards) // 4)
            out.append(
                f"- GRPO: {len(rewards)} logged steps; mean reward (+1 correct, -1 not) {sum(rewards[:n]) / n:+.3f} "
                f"over the first {n}, {sum(rewards[-n:]) / n:+.3f} over the last {n}; final KL "
                f"{kls[-1] if kls else math.nan:.4f}."
            )
    meta_data = pipeline.out / "meta_rm_data" / "judgements.jsonl"
    meta_eval = pipeline.model("meta_rm") / "eval_results.json"
    if meta_data.is_file() and meta_eval.is_file():
        rows = read_jsonl(meta_data)
        m = json.loads(meta_eval.read_text(encoding="utf-8"))
        out.append(
            f"- Meta RM: {len(rows)} judgements of the GRPO model ({_pct(sum(r['label'] for r in rows) / len(rows))}%"
            f" correct); on its own held-out split of them AUC {_auc(m.get('eval_auc'))} pooled, "
            f"{_auc(m.get('eval_within_auc'))} within an example, accuracy {_pct(m['eval_accuracy'])}%."
        )
    return out


def _curves(pipeline: Pipeline) -> list[str]:
    """GRPO's learning curves on the validation set (``grpo/curves.jsonl``), with the mean reward TRL logged on the
    training prompts between two points."""
    path = pipeline.model("grpo") / "curves.jsonl"
    if not path.is_file():
        return []
    points = sorted(read_jsonl(path), key=lambda r: r["step"])
    key = "rewards/spct_reward/mean"
    logged = [(h["step"], h[key]) for h in _trainer_state(pipeline.model("grpo")) if h.get(key) is not None]
    grpo = pipeline.grpo_stage_config()
    k = grpo.curve_k
    out = [
        "## GRPO's learning curves (validation set, not the test set)",
        "",
        f"Every point measures the model in training on the first {grpo.curve_examples} validation items "
        f"(seed {pipeline.config.validation_seed}), the same items and seed at every point: the mean rule reward of "
        f"{k} sampled judgements per item (+1 correct, -1 not; temperature {SAMPLING_TEMPERATURE}) and the accuracy. "
        "The training prompts' reward is TRL's log of the judgements GRPO sampled since the previous point (at "
        f"GRPO's temperature, {grpo.temperature}).",
        "",
        f"| step | rule reward, validation | rule reward, training prompts | greedy | Voting@1 | Voting@{k} |",
        "|---|---|---|---|---|---|",
    ]
    previous = -1
    for p in points:
        window = [r for step, r in logged if previous < step <= p["step"]]
        train = f"{sum(window) / len(window):+.3f}" if window else ""
        out.append(
            f"| {p['step']} | {p['heldout_reward']:+.3f} | {train} | {_pct(p['greedy'])} | {_pct(p['voting@1'])} | "
            f"{_pct(p[f'voting@{k}'])} |"
        )
        previous = p["step"]
    return [*out, ""]


def _auc(value: float | None) -> str:
    """An AUC, or why there is none (it needs both correct and incorrect judgements)."""
    if value is None or math.isnan(value):
        return "n/a (no held-out example with both correct and incorrect judgements)"
    return f"{value:.3f}"


def _faithful_share(sft_set: Path) -> float:
    """Share of an SFT set's judgements that are word for word what the teacher writes when it does not err."""
    from grm.jsonl import read_rows
    from grm.training.synthetic import Teacher, read_prompt

    teacher = Teacher(error_rate=0.0)
    same = []
    for _, row, _ in read_rows(sft_set):
        if row is not None:
            same.append(row["completion"][0]["content"] == teacher.judge(*read_prompt(row["prompt"])).text)
    return sum(same) / len(same) if same else math.nan


def _trainer_state(folder: Path) -> list[dict[str, Any]]:
    candidates = sorted(folder.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    for file in [folder / "trainer_state.json", *reversed(candidates)]:
        if file.is_file():
            return json.loads(file.read_text(encoding="utf-8")).get("log_history", [])
    return []


def _train_log(folder: Path) -> str:
    losses = [h["loss"] for h in _trainer_state(folder) if "loss" in h]
    if not losses:
        return "(no training log)"
    return f"Training loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} logged steps."


def _param_count(folder: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def _sizes(pipeline: Pipeline) -> list[str]:
    out = []
    for name in ("default_grm", "default_meta_rm"):
        folder = pipeline.ship_dir / name
        if folder.is_dir():
            size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
            out.append(f"- `{_shown(folder)}`: {size / 1e6:.1f} MB")
    return out or ["(not shipped yet: run the ship stage)"]


def _shown(folder: Path) -> str:
    """``folder`` relative to the working directory when it is below it (the repository's grm/assets/...)."""
    try:
        return folder.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(folder)
