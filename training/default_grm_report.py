"""The report of a ``grm train default-grm`` run: ``default_grm.md`` and ``default_grm.png``.

Everything in it is read from the run's folder (evaluation results, training statistics, stage timings), so
``grm train default-grm --config ... --stages report`` rewrites it without training or evaluating anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grm.training.synthetic import KINDS

if TYPE_CHECKING:
    from grm.training.default_grm import Pipeline

NAMES = {"teacher": "teacher (rule-based)", "sft": "SFT", "rft": "SFT + RFT", "grpo": "SFT + RFT + GRPO (shipped)"}
COLORS = {"teacher": "0.6", "sft": "tab:blue", "rft": "tab:orange", "grpo": "tab:green"}
TABLE_K = (1, 2, 4, 8, 16, 32)


def write(pipeline: Pipeline, report_dir: Path) -> Path:
    """Write ``default_grm.md`` and ``default_grm.png`` into ``report_dir``; return the markdown's path."""
    from grm.training.default_grm import MODELS

    report_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in ("teacher", *MODELS):
        results[name] = {"sampled": _load(pipeline.eval_dir(name, "sampled"))}
        if name != "teacher":
            results[name]["greedy"] = _load(pipeline.eval_dir(name, "greedy"))
    plot = report_dir / "default_grm.png"
    _plot(results, plot, pipeline.config.eval_k)
    path = report_dir / "default_grm.md"
    path.write_text(_markdown(pipeline, results, plot.name), encoding="utf-8")
    return path


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
    ks = list(range(1, k_max + 1))
    for name, r in results.items():
        color = COLORS[name]
        voting = _curve(r["sampled"], "voting")
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
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("Default GRM on the synthetic task (held-out seed)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, format="png")


def _markdown(pipeline: Pipeline, results: dict[str, dict[str, Any]], plot_name: str) -> str:
    from grm.training.default_grm import STAGES

    c = pipeline.config
    status = pipeline.status()
    ks = [k for k in TABLE_K if k <= c.eval_k]
    init = json.loads((pipeline.model("init") / "config.json").read_text(encoding="utf-8"))
    n_params = _param_count(pipeline.model("grpo"))
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
        f"(own BPE tokenizer), {n_params / 1e6:.2f}M parameters. **Held out**: {c.eval_examples} examples of seed "
        f"{c.heldout_seed} (training used seeds {c.seed}..{c.seed + 4}); {_overlap(pipeline)}",
        "",
        "Accuracy: an item with several responses is right when the voted best response is the right one (ties "
        "broken at random); a lone response when its voted mean score is on the side of its truth. Voting@k and "
        f"MetaRM@k (the meta RM keeps the k/2 judgements it rates highest) come from {c.eval_k} sampled judgements "
        f"per item (temperature 0.5), averaged over {c.eval_draws} random draws of k; greedy is one judgement at "
        "temperature 0. Parse failures are judgements whose scores could not be read. Even k are handicapped: a lone "
        "response's tied vote (one 9, one 2: mean 5.5) counts as wrong, and a tie between several responses is a "
        "coin toss.",
        "",
        "## Results (held-out accuracy, %)",
        "",
        "| model | greedy | " + " | ".join(f"Voting@{k}" for k in ks) + f" | MetaRM@8 | MetaRM@{c.eval_k} "
        "| parse failures (sampled) | parse failures (greedy) |",
        "|---" * (len(ks) + 6) + "|",
    ]
    for name, r in results.items():
        voting = _curve(r["sampled"], "voting")
        meta = _curve(r["sampled"], "metarm")
        greedy = _pct(_num(r["greedy"]["scores"]["voting"]["overall"])) if "greedy" in r else "n/a"
        cells = [NAMES[name], greedy, *(_pct(voting[k]) for k in ks)]
        cells += [_pct(meta.get(8, math.nan)), _pct(meta.get(c.eval_k, math.nan))]
        cells += [_failures(r["sampled"]), _failures(r["greedy"]) if "greedy" in r else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"![Voting@k and MetaRM@k]({plot_name})", "", "## By kind of question", ""]
    lines += [
        f"| model | kind | greedy | Voting@1 | Voting@{c.eval_k} | MetaRM@{c.eval_k} |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for kind in KINDS:
            key = f"subsets/{kind}"
            greedy = _pct(_num(r["greedy"]["scores"]["voting"].get(key))) if "greedy" in r else "n/a"
            v1 = _pct(_curve(r["sampled"], "voting", key).get(1, math.nan))
            vk = _pct(_curve(r["sampled"], "voting", key).get(c.eval_k, math.nan))
            mk = _pct(_curve(r["sampled"], "metarm", key).get(c.eval_k, math.nan))
            lines.append(f"| {NAMES[name]} | {kind} | {greedy} | {v1} | {vk} | {mk} |")
    lines += ["", "## What helped, what did not", "", *_findings(pipeline, results, c.eval_k), ""]
    lines += ["## Training", "", *_training(pipeline), ""]
    lines += ["## Time (wall clock, this machine)", "", "| stage | seconds |", "|---|---|"]
    timed = [s for s in STAGES[: STAGES.index("eval") + 1] if s in status]  # report and ship take no time
    for stage in timed:
        lines.append(f"| {stage} | {status[stage].get('seconds', 'n/a')} |")
    total = sum(status[s].get("seconds", 0) for s in timed)
    lines += [f"| **total** | **{total:.0f}** ({total / 60:.1f} min) |", ""]
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
    """How many held-out questions also occur, word for word, in a training set."""
    from grm.training.default_grm import SPLITS, _read_jsonl

    seen = {row["query"] for split in SPLITS for row in _read_jsonl(pipeline.data(split))}
    held = _read_jsonl(pipeline.data("heldout"))
    by_kind = {kind: [r["query"] in seen for r in held if r["kind"] == kind] for kind in KINDS}
    parts = [f"{kind} {_pct(sum(v) / len(v))}%" for kind, v in by_kind.items() if v]
    total = sum(sum(v) for v in by_kind.values()) / max(len(held), 1)
    return (
        f"{_pct(total)}% of the held-out questions also occur in the training data ({', '.join(parts)}; the "
        "candidate answers, their number and order are drawn afresh, and there are only 54 conversion questions)."
    )


def _findings(pipeline: Pipeline, results: dict[str, dict[str, Any]], k: int) -> list[str]:
    out = []

    def greedy(name: str) -> float:
        return _num(results[name]["greedy"]["scores"]["voting"]["overall"])

    def voting(name: str, kk: int) -> float:
        return _curve(results[name]["sampled"], "voting")[kk]

    def meta(name: str, kk: int) -> float:
        return _curve(results[name]["sampled"], "metarm").get(kk, math.nan)

    def change(a: float, b: float) -> str:
        d = 100 * (b - a)
        verb = "raised" if d > 0.5 else "lowered" if d < -0.5 else "left about unchanged"
        return f"{verb} ({_pct(a)} -> {_pct(b)}, {d:+.1f} points)"

    widths = [
        hi - lo
        for r in results.values()
        for mode in ("greedy", "sampled")
        if mode in r
        for lo, hi in [r[mode]["intervals"].get("voting", {}).get("overall") or (math.nan, math.nan)]
    ]
    width = sum(w for w in widths if not math.isnan(w)) / max(1, sum(not math.isnan(w) for w in widths))
    out.append(
        f"- The held-out set is small: a 95% bootstrap interval of these accuracies spans {100 * width:.0f} points on "
        "average, so differences between stages smaller than half of that are not evidence either way."
    )
    for before, after, what in (("sft", "rft", "RFT"), ("rft", "grpo", "GRPO")):
        out.append(
            f"- {what} {change(greedy(before), greedy(after))} greedy accuracy and "
            f"{change(voting(before, k), voting(after, k))} Voting@{k}."
        )
    for name in ("sft", "rft", "grpo"):
        v1, vk, mk = voting(name, 1), voting(name, k), meta(name, k)
        trend = "rises" if vk > v1 + 0.005 else "does not rise"
        out.append(
            f"- {NAMES[name]}: Voting@k {trend} with k ({_pct(v1)} at k=1, {_pct(vk)} at k={k}); MetaRM@{k} is "
            f"{_pct(mk)}, {100 * (mk - vk):+.1f} points against Voting@{k}."
        )
    rft_set = pipeline.model("rft") / "rft_data" / "sft.jsonl"
    if rft_set.is_file() and greedy("rft") < greedy("sft"):
        out.append(
            f"- Why RFT can lower accuracy here: SPCT's rejection checks only the scores, and "
            f"{_pct(1 - _faithful_share(rft_set))}% of the judgements it kept reach them through a wrong result or "
            "analysis (two mistakes that cancel), which RFT then teaches; its few hundred rows come after tens of "
            "thousands of teacher traces."
        )
    pooled, within, mixed = _meta_discrimination(pipeline, "grpo")
    if mixed:
        out.append(
            f"- The meta RM on the shipped model's held-out samples: AUC {pooled:.2f} over all judgements pooled, "
            f"{within:.2f} within an item (mean over the {mixed} items with both correct and incorrect judgements). "
            "MetaRM@k chooses among one item's judgements, so the within-item figure is the one that counts: a "
            "pooled AUC well above it means the meta RM learned which questions are hard more than which judgement "
            "of a question is right."
        )
    t1, tk = voting("teacher", 1), voting("teacher", k)
    out.append(
        f"- The teacher's errors are independent draws by construction, and voting removes most of them "
        f"({_pct(t1)} -> {_pct(tk)})."
    )
    for name in ("sft", "rft", "grpo"):
        mean, majority = _sample_accuracy(pipeline, name)
        out.append(
            f"- {NAMES[name]}: {_pct(mean)}% of its sampled judgements are correct, and on {_pct(majority)}% of the "
            "items most of them are: voting approaches the latter as k grows, since an error a model makes in most "
            "samples of an item (the same wrong sum every time) cannot be voted away."
        )
    return out


def _judged_samples(pipeline: Pipeline, name: str) -> list[tuple[list[float], list[float] | None]]:
    """Per held-out item, a model's sampled judgements labelled 1.0 (correct by SPCT's rule) or 0.0, and the meta
    RM's scores of them (None when the evaluation had no meta RM)."""
    from grm.jsonl import read_rows
    from grm.training.default_grm import _read_jsonl
    from grm.training.rewards import is_correct

    truth = {row["id"]: row["truth"] for row in _read_jsonl(pipeline.data("heldout"))}
    out = []
    for _, row, _ in read_rows(pipeline.eval_dir(name, "sampled") / "cache.jsonl"):
        if row is not None and row.get("id") in truth:
            reward = row["reward"]
            labels = [float(is_correct(j["scores"], truth[row["id"]])) for j in reward["judgements"]]
            out.append((labels, reward.get("meta_scores")))
    return out


def _sample_accuracy(pipeline: Pipeline, name: str) -> tuple[float, float]:
    """Share of a model's sampled held-out judgements that are correct (SPCT's rule), and share of items on which
    more than half of them are."""
    shares = [sum(labels) / len(labels) for labels, _ in _judged_samples(pipeline, name)]
    if not shares:
        return math.nan, math.nan
    return sum(shares) / len(shares), sum(s > 0.5 for s in shares) / len(shares)


def _meta_discrimination(pipeline: Pipeline, name: str) -> tuple[float, float, int]:
    """The meta RM's ROC-AUC on a model's sampled held-out judgements: pooled, the mean within items, and how many
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
        from grm.training.default_grm import _read_jsonl

        rows = _read_jsonl(meta_data)
        m = json.loads(meta_eval.read_text(encoding="utf-8"))
        out.append(
            f"- Meta RM: {len(rows)} judgements of the GRPO model ({_pct(sum(r['label'] for r in rows) / len(rows))}%"
            f" correct); held-out AUC {m['eval_auc']:.3f}, accuracy {_pct(m['eval_accuracy'])}%."
        )
    return out


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
