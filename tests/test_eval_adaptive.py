"""``grm eval`` with adaptive compute (``adaptive``, ``risk``, ``budget``): each item scored by its own vote over the
judgements it drew, cached and resumed, budgets kept, fixed-k runs unchanged, and the command line's flags."""

import contextlib
import json
import random
import re
from collections import Counter

import pytest
from eval_helpers import marker, run

from grm import GRM
from grm.cli import main
from grm.eval import write_report
from grm.settings import SettingsMismatch
from helpers import ScriptedBackend, shown_responses

QUERY = re.compile(r"\[The Start of Query\]\n(.*?)\n\[The End of Query\]", re.S)


class NoisyJudge(ScriptedBackend):
    """Scores each shown response by its ``[qN]`` tag plus Gaussian noise seeded by the query, the order shown and
    how many samples of that order came before: a sample gets the same scores whether drawn at once or in rounds,
    so adaptive and fixed-k runs see the same sample stream."""

    def __init__(self, noise: float = 1.5) -> None:
        self.counts: Counter = Counter()
        self.noise = noise
        super().__init__(self.judge)

    def judge(self, messages, _):
        shown = shown_responses(messages)
        key = (QUERY.search(messages[-1]["content"]).group(1), *shown)
        rng = random.Random(f"{key}:{self.counts[key]}")
        self.counts[key] += 1
        scores = [min(10, max(1, round(marker(r) + rng.gauss(0, self.noise)))) for r in shown]
        return "Scores: \\boxed{" + ", ".join(map(str, scores)) + "}"

    @property
    def drawn(self) -> int:
        return sum(self.counts.values())

    def queries(self) -> set[str]:
        return {key[0] for key in self.counts}


def write_data(path, n_clear=12, n_close=12):
    """RewardBench rows: clear items (chosen [q9] vs rejected [q2], subset alpacaeval-easy) and close ones ([q6]
    vs [q5], llmbar-natural)."""
    rows = [
        {"id": f"clear{i}", "prompt": f"Clear question {i}?", "chosen": f"Good {i} [q9]", "rejected": f"Bad {i} [q2]"}
        | {"subset": "alpacaeval-easy"}
        for i in range(n_clear)
    ]
    rows += [
        {"id": f"close{i}", "prompt": f"Close question {i}?", "chosen": f"Fine {i} [q6]", "rejected": f"Okay {i} [q5]"}
        | {"subset": "llmbar-natural"}
        for i in range(n_close)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cached(path) -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


@pytest.fixture
def data(tmp_path):
    return write_data(tmp_path / "rb.jsonl")


def test_adaptive_eval_decides_clear_items_as_fixed_k_with_fewer_judgements(data, tmp_path):
    fixed_judge = NoisyJudge()
    fixed = run("rewardbench", data, GRM(fixed_judge), k=16, seed=1, cache=tmp_path / "fixed.jsonl")
    exact_judge = NoisyJudge()
    exact = run("rewardbench", data, GRM(exact_judge), k=16, seed=1, adaptive=True, cache=tmp_path / "exact.jsonl")
    risky_judge = NoisyJudge()
    risky = run("rewardbench", data, GRM(risky_judge), k=16, seed=1, adaptive=True, risk=0.01, cache=tmp_path / "r")
    fixed_rows, exact_rows = cached(tmp_path / "fixed.jsonl"), cached(tmp_path / "exact.jsonl")
    risky_rows = cached(tmp_path / "r")
    best = {i: row["reward"]["best"] for i, row in fixed_rows.items()}
    # the exact rule picks fixed k's best on every item; the risk rule on every clear one
    assert {i: row["reward"]["best"] for i, row in exact_rows.items()} == best
    clear = [i for i in best if i.startswith("clear")]
    assert all(best[i] == 0 for i in clear) and [risky_rows[i]["reward"]["best"] for i in clear] == [0] * len(clear)
    # each item is scored by its own vote: the accuracy is the share of items whose Reward picked the chosen one
    for result, rows in ((exact, exact_rows), (risky, risky_rows)):
        assert result.adaptive and result.curves == {} and list(result.scores) == ["voting"]
        assert result.scores["voting"]["accuracy"] == sum(r["reward"]["best"] == 0 for r in rows.values()) / 24
        assert result.scores["voting"]["subsets/alpacaeval-easy"] == 1.0
        assert all(r["adaptive"] and r["k"] == 16 and 1 <= len(r["reward"]["judgements"]) <= 16 for r in rows.values())
    assert exact.scores["voting"]["accuracy"] == pytest.approx(fixed.scores["voting"]["accuracy"], abs=1 / 24)
    # fewer judgements, counted as drawn, and the risk rule stops earlier on clear items than on close ones
    assert fixed.compute["judgements_drawn"] == fixed_judge.drawn == 16 * 24
    assert exact.compute["judgements_drawn"] == exact_judge.drawn < fixed_judge.drawn
    assert risky.compute["judgements_drawn"] == risky_judge.drawn < exact_judge.drawn
    assert risky.compute["judgements_per_item"] == risky_judge.drawn / 24
    assert risky.compute["tokens"] == 7 * risky_judge.drawn  # the scripted backend's 7 tokens per judgement
    drawn = {i: len(r["reward"]["judgements"]) for i, r in risky_rows.items()}
    close = [drawn[i] for i in drawn if i.startswith("close")]
    assert {drawn[i] for i in clear} == {4} and sum(close) / len(close) > 8, close  # one round / several


def test_adaptive_report_says_why_there_are_no_curves(data, tmp_path):
    result = run("rewardbench", data, GRM(NoisyJudge()), k=8, seed=0, adaptive=True, risk=0.05)
    paths = write_report(result, tmp_path / "report")
    assert sorted(paths) == ["json", "markdown"] and not (tmp_path / "report" / "curves.png").exists()
    saved = json.loads(paths["json"].read_text())
    assert saved["adaptive"] is True and saved["curves"] == {} and saved["config"]["risk"] == 0.05
    assert saved["compute"]["judgements_drawn"] == result.compute["judgements_drawn"] < 8 * 24
    md = paths["markdown"].read_text()
    assert md.startswith(f"# rewardbench: {100 * result.headline:.1f}% accuracy, Voting@8 (adaptive)")
    assert "| score | Voting@8 (adaptive) | 95% CI |" in md and "Not computed: this run was adaptive" in md
    assert f"| judgements drawn per item | {result.compute['judgements_per_item']:.2f} (" in md
    assert "voting@k](" not in md


@pytest.mark.parametrize("budget", [0.25, 0.5, 10, 33])
def test_an_adaptive_eval_never_exceeds_its_budget(data, budget):
    """A budget is per ``score_batch`` call (``chunk_size`` items); every call keeps it."""
    judge = NoisyJudge(noise=2.0)
    grm, per_call = GRM(judge), []
    score_batch = grm.score_batch

    def counting(items, options, **kwargs):
        rewards = score_batch(items, options, **kwargs)
        per_call.append((len(items), sum(r.n_drawn for r in rewards)))
        return rewards

    grm.score_batch = counting
    result = run("rewardbench", data, grm, k=8, seed=2, budget=budget, chunk_size=10)
    assert [n for n, _ in per_call] == [10, 10, 4]
    limits = [budget if isinstance(budget, int) else int(budget * 8 * n) for n, _ in per_call]
    assert all(drawn <= limit for (_, drawn), limit in zip(per_call, limits))
    assert [d for _, d in per_call[:2]] == limits[:2], "the budget binds: a full chunk of 10 would draw more"
    assert result.compute["judgements_drawn"] == sum(d for _, d in per_call) == judge.drawn
    assert result.adaptive and result.n_items == 24 and result.config["budget"] == budget


def test_resuming_an_adaptive_eval_scores_only_the_missing_items(data, tmp_path):
    cache = tmp_path / "judgements.jsonl"
    options = dict(k=16, seed=3, adaptive=True, risk=0.01, chunk_size=5)
    first = NoisyJudge()
    run("rewardbench", data, GRM(first), cache=cache, limit=9, **options)
    assert len(cached(cache)) == 9
    done = set(cached(cache))

    judge = NoisyJudge()
    resumed = run("rewardbench", data, GRM(judge), cache=cache, **options)
    prompts = {json.loads(x)["prompt"] for x in data.read_text().splitlines() if json.loads(x)["id"] not in done}
    assert judge.queries() == prompts and len(prompts) == 15, "only the 15 missing items were judged"
    clean = run("rewardbench", data, GRM(NoisyJudge()), **options)
    assert resumed.scores == clean.scores and resumed.intervals == clean.intervals
    assert resumed.compute == clean.compute and resumed.n_judgements == clean.n_judgements

    again = NoisyJudge()
    run("rewardbench", data, GRM(again), cache=cache, **options)
    assert again.drawn == 0, "a finished run recomputes nothing"


def test_a_cache_resumes_only_runs_with_its_settings(data, tmp_path):
    adaptive, fixed = tmp_path / "adaptive.jsonl", tmp_path / "fixed.jsonl"
    run("rewardbench", data, GRM(NoisyJudge()), k=8, adaptive=True, risk=0.05, cache=adaptive, limit=4)
    run("rewardbench", data, GRM(NoisyJudge()), k=8, cache=fixed, limit=4)
    fresh = f"Delete {re.escape(str(adaptive))} to start afresh, or pass another cache"
    with pytest.raises(
        SettingsMismatch, match=f"\n  adaptive: true then, false now\n  risk: 0.05 then, 0.0 now\n{fresh}"
    ):
        run("rewardbench", data, GRM(NoisyJudge()), k=8, cache=adaptive)
    with pytest.raises(SettingsMismatch, match="\n  k: 8 then, 4 now\n"):
        run("rewardbench", data, GRM(NoisyJudge()), k=4, adaptive=True, risk=0.05, cache=adaptive)
    with pytest.raises(SettingsMismatch, match="\n  budget: null then, 0.5 now\n  chunk_size: null then, 32 now\n"):
        run("rewardbench", data, GRM(NoisyJudge()), k=8, budget=0.5, cache=fixed)
    assert run("rewardbench", data, GRM(NoisyJudge()), k=8, cache=fixed).n_items == 24, "the same settings resume"
    with pytest.raises(ValueError, match=r"options \['adaptive', 'risk'\] apply to a GRM only"):
        run("rewardbench", data, lambda m, r: [0.0] * len(r), adaptive=True, risk=0.1)


class TagRater:
    """A meta RM that rates a judgement 1 when it ranks the responses as their tags do, else 0."""

    def score_batch(self, entries):
        def agrees(j, responses):
            tags = [marker(r) for r in responses]
            return float(j.scores is not None and (j.scores[0] > j.scores[1]) == (tags[0] > tags[1]))

        return [[agrees(j, responses) for j in js] for _, responses, js in entries]


def test_adaptive_eval_with_a_meta_rm_scores_the_meta_rm_vote(data, tmp_path):
    cache = tmp_path / "c.jsonl"
    r = run("rewardbench", data, GRM(NoisyJudge(3.0)), k=8, adaptive=True, meta_rm=TagRater(), k_meta=4, cache=cache)
    assert list(r.scores) == ["metarm"] and r.mode == "metarm" and r.curves == {}
    rows = cached(cache)
    assert all(len(row["reward"]["meta_scores"]) == len(row["reward"]["judgements"]) for row in rows.values())
    assert r.scores["metarm"]["accuracy"] == sum(row["reward"]["best"] == 0 for row in rows.values()) / 24
    with pytest.raises(SettingsMismatch, match='meta_rm: "TagRater" then, null now\n  k_meta: 4 then, null now'):
        run("rewardbench", data, GRM(NoisyJudge()), k=8, adaptive=True, cache=cache)


def test_fixed_k_eval_is_unchanged(data, tmp_path):
    cache = tmp_path / "c.jsonl"
    r = run("rewardbench", data, GRM(NoisyJudge()), k=4, seed=0, cache=cache)
    assert not r.adaptive and sorted(r.curves["voting"]) == [1, 2, 3, 4] and r.scores["voting"] == r.curves["voting"][4]
    assert r.compute == {"judgements_drawn": 96, "judgements_per_item": 4.0, "tokens": 672, "tokens_per_item": 28.0}
    assert all(
        "adaptive" not in row and row["k"] == len(row["reward"]["judgements"]) == 4 for row in cached(cache).values()
    )
    md = write_report(r, tmp_path / "report")["markdown"].read_text()
    assert "(adaptive)" not in md and "| 4 |" in md and "| judgements drawn per item | 4.00 (96 in all" in md
    assert run("rewardbench", data, lambda m, rs: [float(marker(x)) for x in rs]).compute == {}


@pytest.fixture
def scripted_cli(monkeypatch):
    """``grm eval`` with a NoisyJudge GRM in place of a loaded model; records each GRM it opens."""
    opened = []

    @contextlib.contextmanager
    def open_scorer(args):
        opened.append(NoisyJudge())
        yield GRM(opened[-1]), None

    monkeypatch.setattr("grm.eval.cli.open_scorer", open_scorer)
    return opened


def eval_args(data, out, *extra):
    return [
        "eval",
        "--benchmark",
        "rewardbench",
        "--data",
        str(data),
        "--output",
        str(out),
        "--bootstrap",
        "20",
        *extra,
    ]


def test_grm_eval_adaptive_flags(data, tmp_path, scripted_cli, caplog):
    out = tmp_path / "out"
    with caplog.at_level("INFO", logger="grm"):
        assert main(eval_args(data, out, "-k", "8", "--adaptive", "--risk", "0.01")) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["adaptive"] and result["curves"] == {} and result["config"]["risk"] == 0.01
    assert result["compute"]["judgements_drawn"] == scripted_cli[-1].drawn < 8 * 24
    assert "Not computed" in (out / "report.md").read_text() and not (out / "curves.png").exists()
    assert "(voting@8 adaptive, 24 items, " in caplog.text and "judgements per item)" in caplog.text
    assert main(eval_args(data, out, "-k", "8", "--adaptive", "--risk", "0.01")) == 0
    assert scripted_cli[-1].drawn == 0, "resumed from the cache"

    for flag, budget in (("50%", 0.5), ("0.25", 0.25), ("30", 30)):
        out = tmp_path / f"budget{budget}"
        assert main(eval_args(data, out, "-k", "8", "--budget", flag, "--chunk-size", "12")) == 0
        result = json.loads((out / "result.json").read_text())
        limit = budget if isinstance(budget, int) else budget * 8 * 12
        assert result["config"]["budget"] == budget and result["compute"]["judgements_drawn"] <= 2 * limit


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--adaptive", "--risk", "2"], "risk must be a number in [0, 1) (0: the exact rule), got 2.0"),
        (["--adaptive", "--risk", "nan"], "risk must be a number in [0, 1)"),
        (["--risk", "0.1"], "risk applies to adaptive scoring"),
        (["--budget", "0"], "budget must be >= 1, got 0"),
        (["--budget", "150%"], "budget must be a whole number of judgements >= 1 or a fraction in (0, 1]"),
        (["--budget", "-0.5"], "fraction in (0, 1] of k * items, got -0.5"),
    ],
)
def test_grm_eval_refuses_bad_adaptive_flags_before_loading_a_model(
    data, tmp_path, scripted_cli, caplog, flags, message
):
    assert main(eval_args(data, tmp_path / "out", "-k", "8", *flags)) == 2
    assert message in caplog.text and scripted_cli == []


def test_grm_eval_budget_flag_errors(data, tmp_path, scripted_cli, caplog, capsys):
    with pytest.raises(SystemExit) as exit:
        main(eval_args(data, tmp_path / "out", "--budget", "lots"))
    assert exit.value.code == 2
    assert "expected a fraction (0.5, 50%) or a number of judgements, got 'lots'" in capsys.readouterr().err
    # a count below one judgement per item of a call
    assert main(eval_args(data, tmp_path / "out", "-k", "8", "--budget", "5", "--chunk-size", "8")) == 2
    assert "a budget of 5 gives 5 judgements, fewer than one per item (8)" in caplog.text
