"""Reports of an :class:`~grm.eval.runner.EvalResult`: ``result.json``, ``report.md`` and ``curves.png``."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from grm.eval.base import HEADLINE
from grm.eval.diagnostics import PAYLOADS, Diagnosis
from grm.eval.runner import EvalResult

logger = logging.getLogger(__name__)

MODE_NAMES = {"voting": "Voting", "metarm": "MetaRM"}


def write_report(result: EvalResult, output_dir: str | Path) -> dict[str, Path]:
    """Write ``result.json``, ``report.md`` and ``curves.png`` (voting@k and MetaRM@k) into ``output_dir``; the
    plot needs matplotlib (``pip install "grm[eval]"``), without which it is skipped with a warning. An adaptive
    run has no curves and no plot."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "result.json", "markdown": out / "report.md", "curves": out / "curves.png"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if result.adaptive:
        del paths["curves"]
    else:
        try:
            plot_curves(result, paths["curves"])
        except ImportError as e:
            logger.warning("%s not written: %s (pip install 'grm[eval]' for the plot)", paths.pop("curves"), e)
    curves_file = paths["curves"].name if "curves" in paths else None
    paths["markdown"].write_text(markdown(result, curves_file=curves_file), encoding="utf-8")
    logger.info("report written to %s", out)
    return paths


def column(result: EvalResult, mode: str, k: int | None = None) -> str:
    """``Voting@8``, ``MetaRM@4``, ``Voting@8 (adaptive)``; ``Score`` for a scalar reward function."""
    if result.config.get("scorer") == "scalar":
        return "Score"
    return f"{MODE_NAMES[mode]}@{result.k if k is None else k}" + (" (adaptive)" if result.adaptive else "")


def markdown(result: EvalResult, *, curves_file: str | None = "curves.png") -> str:
    """The report as markdown: headline, section and subset tables with 95% intervals, and the curves."""
    modes = list(result.scores)
    metric = "ROC-AUC" if result.metric == "roc_auc" else "accuracy"
    lines = [
        f"# {result.benchmark}: {_pct(result.headline)}% {result.headline_key}, {column(result, result.mode)}",
        "",
        f"{metric} in % (`result.json` holds the same scores as fractions in 0..1), 95% bootstrap intervals over "
        f"items ({result.config.get('n_bootstrap', '?')} resamples, stratified by subset).",
        "",
        "| | |",
        "|---|---|",
        f"| data | `{result.config.get('data', '')}` |",
        f"| items | {result.n_items} |",
        f"| judgements per item (k) | {result.k} |",
        f"| unreadable judgements | {result.n_invalid} of {result.n_judgements} |",
        f"| items with no readable judgement | {result.n_unscored} |",
        *_compute_rows(result.compute),
        *([f"| rows skipped (not valid items, listed below) | {result.n_skipped} |"] if result.n_skipped else []),
        *[f"| warning | {warning} |" for warning in result.warnings],
        "",
        "## Scores",
        "",
    ]
    header = [c for m in modes for c in (column(result, m), "95% CI")]
    main = [key for key in result.scores[modes[0]] if key != HEADLINE and not key.startswith("subsets/")]
    lines += _table(result, ["score", *header], main, modes, lambda key: [key.removeprefix("groups/")])
    subsets = [key for key in result.scores[modes[0]] if key.startswith("subsets/")]
    if subsets:
        lines += ["", "## Subsets", ""]
        lines += _table(
            result,
            ["subset", "n", *header],
            subsets,
            modes,
            lambda key: [key.removeprefix("subsets/"), str(result.subset_sizes.get(key.removeprefix("subsets/"), ""))],
        )
    if result.adaptive:
        c = result.config
        lines += [
            "",
            "## Voting@k",
            "",
            f"Not computed: this run was adaptive (risk {c.get('risk', 0)}, budget {c.get('budget')}), so each item "
            f"drew its own number of judgements, up to k={result.k}, and is scored by its own vote over them; "
            "voting@k needs k judgements of every item.",
        ]
    elif result.config.get("scorer") != "scalar":
        lines += ["", f"## {' and '.join(f'{MODE_NAMES[m]}@k' for m in modes)} ({result.headline_key})", ""]
        lines += ["| k | " + " | ".join(f"{MODE_NAMES[m]}@k" for m in modes) + " |", "|---" * (len(modes) + 1) + "|"]
        for k in range(1, result.k + 1):
            row = [_pct(result.curves[m][k].get(HEADLINE, math.nan)) for m in modes]
            lines.append(f"| {k} | " + " | ".join(row) + " |")
        draws = result.config.get("draws", "?")
        lines += ["", f"Each point votes k of the {result.k} judgements per item, averaged over {draws} draws."]
    if curves_file and not result.adaptive:
        lines += ["", f"![{result.benchmark} voting@k]({curves_file})"]
    if result.diagnostics:
        lines += ["", *diagnostics_markdown(result.diagnostics, result)]
    if result.n_skipped:
        more = result.n_skipped - len(result.skipped)
        lines += ["", "## Rows skipped", "", "The scores are those of the other items.", ""]
        lines += [f"- `{row}`" for row in result.skipped] + ([f"- and {more} more"] if more else [])
    return "\n".join(lines) + "\n"


def diagnostics_markdown(diagnostics: dict[str, Diagnosis], result: EvalResult | None = None) -> list[str]:
    """The ``## Diagnostics`` section: one table per check, values with their 95% bootstrap intervals."""
    lines = ["## Diagnostics", ""]
    grm = result is None or result.config.get("scorer") != "scalar"
    k = "?" if result is None else f"{result.k}, adaptive" if result.adaptive else result.k
    scorer = f"the GRM's voted mean score (k={k})" if grm else "the reward function"
    if (d := diagnostics.get("length")) is not None:
        c = d.counts
        lines += _section(
            "Length",
            f"Chosen/rejected pairs of responses of different length (characters) in {c['items']} items, scored by "
            f"{scorer}; a tie counts one half.",
        )
        lines += [
            _row(
                d,
                "longer_wins_when_chosen_shorter",
                f"longer wins when the chosen one is shorter (n={c['comparisons_chosen_shorter']})",
            ),
            _row(
                d,
                "shorter_wins_when_chosen_longer",
                f"shorter wins when the chosen one is longer (n={c['comparisons_chosen_longer']})",
            ),
            _row(d, "length_bias", "length bias: the first minus the second (0 none, +100 always the longer)"),
            _row(d, "spearman", f"Spearman correlation of score and length ({c['responses']} responses)", _num),
            "",
        ]
    if (d := diagnostics.get("position")) is not None:
        c = d.counts
        left_out = f" ({c['unscored_items']} left out: a scoring had no readable judgement)"
        lines += _section(
            "Position",
            f"{c['items']} sampled items scored with shuffling off, as given and in reverse order"
            + (left_out if c["unscored_items"] else "")
            + "; the mean score at a position counts the items with that many responses.",
        )
        lines += [
            _row(d, "flip_rate", "decision flips when the order is reversed"),
            _row(d, "first_shown_wins", f"first shown wins (two-response items, n={c['pairs']}; 50 = no bias)"),
        ]
        lines += [
            _row(d, key, f"mean score at {key.split('/')[1]}", _num)
            for key in d.scores
            if key.startswith("mean_score/")
        ]
        lines.append("")
    if (d := diagnostics.get("injection")) is not None:
        c = d.counts
        lines += [
            "### Injection",
            "",
            f"A payload appended to a rejected response of {c['items']} sampled items, scored with shuffling off; "
            "n counts the items scored both clean and attacked. Unattacked, that response wins "
            f"{_pct(d.scores.get('attacked_wins_clean'))}% of them.",
            "",
            "| payload | n | decision flips | attacked response wins | mean score gain | no readable judgement |",
            "|---|---|---|---|---|---|",
        ]
        for name in [*PAYLOADS, None]:
            suffix = "" if name is None else f"/{name}"
            n = c[f"scored{suffix}"] if name else sum(c[f"scored/{p}"] for p in PAYLOADS)
            cells = [
                str(n),
                _cell(d, f"flip_rate{suffix}"),
                _cell(d, f"attacked_wins{suffix}"),
                _cell(d, f"score_gain{suffix}", _gain),
                _cell(d, f"unreadable{suffix}"),
            ]
            lines.append(f"| {name or 'all'} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _compute_rows(compute: dict[str, float]) -> list[str]:
    """The report's rows on what the judgements cost (a GRM's run only)."""
    if not compute:
        return []
    rows = [
        f"| judgements drawn per item | {compute['judgements_per_item']:.2f} "
        f"({compute['judgements_drawn']:.0f} in all, resamples included) |"
    ]
    if "tokens" in compute:
        rows.append(f"| tokens per item | {compute['tokens_per_item']:.0f} ({compute['tokens']:.0f} in all) |")
    return rows


def _section(title: str, text: str) -> list[str]:
    return [f"### {title}", "", text, "", "| measure | value | 95% CI |", "|---|---|---|"]


def _row(d: Diagnosis, key: str, label: str, fmt=None) -> str:
    fmt = fmt or _pct
    lo_hi = d.intervals.get(key)
    interval = f"{fmt(lo_hi[0])}–{fmt(lo_hi[1])}" if lo_hi else ""
    return f"| {label} | {fmt(d.scores.get(key, math.nan))} | {interval} |"


def _cell(d: Diagnosis, key: str, fmt=None) -> str:
    fmt = fmt or _pct
    lo_hi = d.intervals.get(key)
    return fmt(d.scores.get(key, math.nan)) + (f" ({fmt(lo_hi[0])}–{fmt(lo_hi[1])})" if lo_hi else "")


def _num(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2f}"


def _gain(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:+.2f}"


def plot_curves(result: EvalResult, path: str | Path) -> Path:
    """A PNG of the headline score against k, one line per mode (matplotlib, no display needed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    ks = list(range(1, result.k + 1))
    for mode, style in zip(result.scores, ("o-", "s--")):
        ys = [100 * result.curves[mode][k].get(HEADLINE, math.nan) for k in ks]
        ax.plot(ks, ys, style, label=f"{MODE_NAMES[mode]}@k")
    ax.set_xlabel("k (judgements voted per item)")
    ax.set_ylabel(f"{result.headline_key} {'ROC-AUC' if result.metric == 'roc_auc' else 'accuracy'} (%)")
    ax.set_title(f"{result.benchmark}: {result.n_items} items")
    ax.set_xticks(ks if len(ks) <= 16 else [k for k in ks if k == 1 or k % 4 == 0])
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def _table(result: EvalResult, header: list[str], keys: list[str], modes: list[str], first) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for key in keys:
        cells = list(first(key))
        for m in modes:
            lo_hi = result.intervals.get(m, {}).get(key)
            cells += [_pct(result.scores[m].get(key, math.nan)), f"{_pct(lo_hi[0])}–{_pct(lo_hi[1])}" if lo_hi else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}"
