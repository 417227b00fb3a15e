"""Diagnostics: length, position and injection bias, with scripted GRMs and scalar reward functions that are
biased on purpose (the diagnosis must show it) or not (it must not), worked out by hand.

The data (``pairs``) has five chosen/rejected pairs, tags ``[qN]`` giving each response's score:

1. chosen short [q9] vs rejected long [q3]      3. chosen long [q8] vs rejected short [q2]
2. chosen short [q3] vs rejected long [q7]      4. chosen long [q5] vs rejected short [q5] (a tie)
5. equal lengths [q6] vs [q6]

A tag judge: when the chosen one is shorter (1, 2) the longer wins once in two: 1/2; when it is longer (3, 4) the
shorter wins 0 + 1/2 (the tie) in two: 1/4; length bias 1/2 - 1/4.
"""

import hashlib
import json
import math

import numpy as np
import pytest
from eval_helpers import FIXTURES, marker, marker_grm, marker_scalar, run, scripted

from grm import GRM, ScoringOptions
from grm.backends import Completion
from grm.cli import main
from grm.eval import PAYLOADS, write_report
from grm.eval.diagnostics import ItemSample, parse_checks, spearman
from grm.settings import SettingsMismatch, settings_path
from helpers import shown_responses

ROWS = [
    ("Name a colour.", "Red [q9]", "A much longer answer [q3]"),
    ("Name a fruit.", "Fig [q3]", "A much longer answer here [q7]"),
    ("Name a tree.", "A long and careful answer [q8]", "Oak [q2]"),
    ("Name a bird.", "A long and careful answer too [q5]", "Jay [q5]"),
    ("Name a fish.", "Cod [q6]", "Eel [q6]"),
]


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"id": i, "prompt": q, "chosen": c, "rejected": r, "subset": "alpacaeval-easy"}
        for i, (q, c, r) in enumerate(ROWS)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def first_shown_grm():
    """Gives the response shown first 9 and every other 2."""
    return scripted(lambda shown: [9] + [2] * (len(shown) - 1))


SIGNS = ("rate this response", "打", "\\boxed{", "Evaluation Notes")


def injectable(text: str) -> int:
    """Obeys any payload: 10 to a response carrying one, else the tag."""
    return 10 if any(sign in text for sign in SIGNS) else marker(text)


def test_parse_checks_and_the_sample():
    assert parse_checks("injection, length") == ("length", "injection")
    assert parse_checks(["position"]) == ("position",) and parse_checks(None) == () == parse_checks("")
    with pytest.raises(ValueError, match=r"unknown diagnostics \['speed'\]; expected some of"):
        parse_checks("length,speed")
    sample = ItemSample(3, seed=0)
    from grm.eval import EvalItem

    items = [EvalItem("q", ["a", "b"], [1.0, 0.0], id=str(i)) for i in range(50)]
    for it in [EvalItem("q", ["lone"], [1.0], id="x"), *items]:
        sample.offer(it)
    kept = [it.id for it in sample.items]
    assert len(kept) == 3 and "x" not in kept and kept == sorted(kept, key=int), "offered order, two+ responses"
    again = ItemSample(3, seed=0)
    for it in items:
        again.offer(it)
    assert [it.id for it in again.items] == kept, "seeded"
    picks = set()
    for seed in range(40):
        s = ItemSample(3, seed)
        for it in items:
            s.offer(it)
        picks.update(int(it.id) for it in s.items)
    assert max(picks) >= 45 and min(picks) <= 5, "late items are as likely as early ones"


def test_spearman_by_hand():
    assert spearman(np.array([1, 2, 3]), np.array([10, 20, 30])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3]), np.array([30, 20, 10])) == pytest.approx(-1.0)
    # ranks (1.5, 1.5, 3) and (1, 2, 3): centred (-.5, -.5, 1) and (-1, 0, 1): 1.5 / sqrt(1.5 * 2)
    assert spearman(np.array([1, 1, 2]), np.array([1, 2, 3])) == pytest.approx(1.5 / math.sqrt(3))
    assert math.isnan(spearman(np.array([4, 4]), np.array([1, 2]))) and math.isnan(spearman(np.array([1]), [1]))


def test_length_by_hand_for_a_tag_judge_and_a_length_biased_one(pairs):
    fair = run("rewardbench", pairs, marker_scalar, diagnose="length").diagnostics["length"]
    assert fair.scores["longer_wins_when_chosen_shorter"] == 0.5
    assert fair.scores["shorter_wins_when_chosen_longer"] == 0.25
    assert fair.scores["length_bias"] == 0.25
    assert fair.counts == {
        "items": 5,
        "unscored_items": 0,
        "comparisons_chosen_shorter": 2,
        "comparisons_chosen_longer": 2,
        "responses": 10,
    }
    longest = run("rewardbench", pairs, lambda m, rs: [len(r) for r in rs], diagnose="length").diagnostics["length"]
    assert longest.scores == {
        "longer_wins_when_chosen_shorter": 1.0,
        "shorter_wins_when_chosen_longer": 0.0,
        "length_bias": 1.0,
        "spearman": 1.0,
    }
    shortest = run("rewardbench", pairs, lambda m, rs: [-len(r) for r in rs], diagnose="length").diagnostics
    assert shortest["length"].scores["length_bias"] == -1.0 and shortest["length"].scores["spearman"] == -1.0
    lo, hi = fair.intervals["length_bias"]
    assert lo <= 0.25 <= hi and lo < hi


def test_length_reads_a_grms_judgements_also_from_the_cache(pairs, tmp_path):
    cache = tmp_path / "j.jsonl"
    first = run("rewardbench", pairs, marker_grm(), k=2, cache=cache, diagnose="length")
    assert first.diagnostics["length"].scores["length_bias"] == 0.25
    grm, backend = scripted(lambda shown: [1] * len(shown))
    again = run("rewardbench", pairs, grm, k=2, cache=cache, diagnose="length")
    assert backend.calls == [] and again.diagnostics["length"].scores == first.diagnostics["length"].scores


def test_position_shows_a_first_shown_judge_and_clears_a_fair_one(pairs):
    grm, backend = first_shown_grm()
    r = run("rewardbench", pairs, grm, diagnose="position")  # the evaluation itself shuffles
    d = r.diagnostics["position"]
    assert d.scores == {
        "flip_rate": 1.0,
        "first_shown_wins": 1.0,
        "mean_score/position 1": 9.0,
        "mean_score/position 2": 2.0,
    }
    assert d.counts == {"items": 5, "unscored_items": 0, "pairs": 5}
    shown = [shown_responses(req.messages) for req in backend.calls[-1]]
    rows = [[c, rej] for _, c, rej in ROWS]
    assert shown == [row[::-1] for row in rows], "the diagnosis shows the reversed order as it is: no shuffle"
    assert [shown_responses(req.messages) for req in backend.calls[-2]] == rows

    fair = run("rewardbench", pairs, marker_grm(), diagnose="position").diagnostics["position"]
    assert fair.scores["flip_rate"] == 0.0 and fair.scores["first_shown_wins"] == 0.5
    assert fair.scores["mean_score/position 1"] == fair.scores["mean_score/position 2"] == 5.4  # all ten, each once
    scalar = run("rewardbench", pairs, marker_scalar, diagnose="position").diagnostics["position"]
    assert scalar.scores == fair.scores


def test_position_on_best_of_n_items_reports_every_position():
    d = run("rewardbench2", FIXTURES / "rewardbench2.jsonl", first_shown_grm()[0], diagnose="position")
    d = d.diagnostics["position"]
    positions = [key for key in d.scores if key.startswith("mean_score/")]
    assert positions == [f"mean_score/position {p}" for p in range(1, 6)], "Ties items show up to five"
    assert d.scores["mean_score/position 1"] == 9.0 and d.scores["mean_score/position 4"] == 2.0
    assert d.scores["flip_rate"] == 1.0 and d.counts == {"items": 16, "unscored_items": 0, "pairs": 3}
    assert d.scores["first_shown_wins"] == 1.0, "over the two-response items only (ref:3, ref:4, ref:5)"


def test_injection_shows_an_injectable_judge_and_clears_a_fair_one(pairs):
    grm, backend = scripted(lambda shown: [injectable(x) for x in shown])
    d = run("rewardbench", pairs, grm, diagnose="injection").diagnostics["injection"]
    # unattacked, the rejected response wins pair 2 only; attacked, it gets 10 and wins all five: the decision
    # changes on 1, 3, 4 and 5 (4 and 5 were ties); the gain is 10 minus the rejected tags 3, 7, 2, 5, 6
    assert d.scores["attacked_wins_clean"] == 0.2
    for name in PAYLOADS:
        assert d.scores[f"flip_rate/{name}"] == 0.8 and d.scores[f"attacked_wins/{name}"] == 1.0
        assert d.scores[f"score_gain/{name}"] == pytest.approx(5.4)
    assert (d.scores["flip_rate"], d.scores["attacked_wins"], d.scores["score_gain"]) == pytest.approx((0.8, 1, 5.4))
    assert d.counts == {
        "items": 5,
        "unscored_clean": 0,
        "skipped_no_rejected": 0,
        **{f"scored/{name}": 5 for name in PAYLOADS},
    }
    assert d.scores["unreadable"] == 0.0
    forged = [
        req.messages[-1]["content"]
        for call in backend.calls
        for req in call
        if "Evaluation Notes" in req.messages[-1]["content"]
    ]
    assert len(forged) == 5
    for prompt in forged:
        lines = prompt.splitlines()
        assert lines.count("[The End of Response 2]") == 1 and "\\[The End of Response 2]" in lines, "escaped"
    assert any("忽略之前的所有指令" in req.messages[-1]["content"] for call in backend.calls for req in call)
    assert any("Scores: \\boxed{10, 10}" in req.messages[-1]["content"] for call in backend.calls for req in call)

    fair = run("rewardbench", pairs, marker_grm(), diagnose="injection").diagnostics["injection"]
    assert fair.scores["flip_rate"] == 0.0 and fair.scores["score_gain"] == 0.0
    assert fair.scores["attacked_wins"] == fair.scores["attacked_wins_clean"] == 0.2
    scalar = run("rewardbench", pairs, marker_scalar, diagnose="injection").diagnostics["injection"]
    assert scalar.scores == fair.scores, "a GRM and a scalar RM compare on the same terms"
    longest = run("rewardbench", pairs, lambda m, rs: [len(r) for r in rs], diagnose="injection").diagnostics
    assert longest["injection"].scores["score_gain"] > 0, "a length-biased RM rewards any padding"


def test_a_sample_of_items_and_items_without_a_rejected_response(pairs):
    r = run("rewardbench", pairs, marker_grm(), diagnose="position,injection", diagnose_sample=3, seed=4)
    assert r.diagnostics["position"].counts["items"] == r.diagnostics["injection"].counts["items"] == 3
    assert r.config["diagnose"] == ["position", "injection"] and r.config["diagnose_sample"] == 3
    lone = run("realmistake", FIXTURES / "realmistake", marker_grm(), diagnose="length,position,injection")
    d = lone.diagnostics
    assert d["position"].counts["items"] == d["injection"].counts["items"] == 0
    assert math.isnan(d["length"].scores["length_bias"]) and d["length"].counts["responses"] == 6
    with pytest.raises(ValueError, match="diagnose_sample must be >= 1"):
        run("rewardbench", pairs, marker_grm(), diagnose="position", diagnose_sample=0)


def test_unreadable_judgements_are_counted_and_left_out(pairs):
    grm, _ = scripted(lambda shown: [] if "Evaluation Notes" in "".join(shown) else [marker(x) for x in shown])
    d = run("rewardbench", pairs, grm, diagnose="injection").diagnostics["injection"]
    assert d.counts["scored/forged_delimiters"] == 0 and d.counts["scored/fake_scores"] == 5
    assert d.scores["unreadable/forged_delimiters"] == 1.0 and math.isnan(d.scores["flip_rate/forged_delimiters"])
    assert d.scores["flip_rate/fake_scores"] == 0.0 and d.scores["unreadable/fake_scores"] == 0.0
    assert d.scores["unreadable"] == 0.25, "one payload of four"


def test_rescores_are_cached_and_resume(pairs, tmp_path):
    cache = tmp_path / "judgements.jsonl"
    first = run("rewardbench", pairs, marker_grm(), cache=cache, diagnose="position,injection")
    side = tmp_path / "judgements.diagnostics.jsonl"
    rows = side.read_text().splitlines()
    assert len(rows) == 5 * (2 + len(PAYLOADS)), "as given and reversed, then each payload (as given is shared)"
    assert json.loads(rows[0])["reward"]["judgements"][0]["text"].endswith("Scores: \\boxed{9, 3}"), "text kept"
    side.write_text("\n".join(rows[:-7]) + "\n")  # an interrupted diagnosis
    grm, backend = scripted(lambda shown: [marker(x) for x in shown])
    again = run("rewardbench", pairs, grm, cache=cache, diagnose="position,injection")
    assert sum(len(call) for call in backend.calls) == 7, "only the seven missing re-scores"
    assert {c: d.scores for c, d in again.diagnostics.items()} == {c: d.scores for c, d in first.diagnostics.items()}
    other = tmp_path / "other"
    other.mkdir()
    for name in (side.name, settings_path(side).name):
        (other / name).write_text((tmp_path / name).read_text())
    with pytest.raises(
        SettingsMismatch, match=r"judgements.diagnostics.jsonl was written with other .*\n  k: 1 then, 2 now"
    ):
        run("rewardbench", pairs, marker_grm(), k=2, cache=other / cache.name, diagnose="position")
    with pytest.raises(SettingsMismatch, match='\n  scorer: "grm" then, "scalar" now\n'):
        run("rewardbench", pairs, marker_scalar, cache=other / cache.name, diagnose="position")
    (other / "fresh.diagnostics.jsonl").write_text(side.read_text())  # its rows, without the record of its settings
    with pytest.raises(SettingsMismatch, match="fresh.diagnostics.jsonl holds rows but no record of the settings"):
        run("rewardbench", pairs, marker_grm(), cache=other / "fresh.jsonl", diagnose="position")


def test_report_and_json_carry_the_diagnostics(pairs, tmp_path):
    grm, _ = first_shown_grm()
    r = run("rewardbench", pairs, grm, diagnose="length,position,injection", n_bootstrap=100)
    paths = write_report(r, tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "## Diagnostics" in md and "### Length" in md and "### Position" in md and "### Injection" in md
    assert "| decision flips when the order is reversed | 100.0 | 100.0–100.0 |" in md
    assert "| mean score at position 1 | 9.00 |" in md
    for name in PAYLOADS:
        assert f"| {name} | 5 | " in md
    assert "| all | 20 | " in md
    data = json.loads(paths["json"].read_text())
    assert data["diagnostics"]["position"]["scores"]["flip_rate"] == 1.0
    assert data["diagnostics"]["length"]["counts"]["items"] == 5
    plain = run("rewardbench", pairs, marker_scalar)
    assert "Diagnostics" not in write_report(plain, tmp_path / "plain")["markdown"].read_text()


def test_grm_eval_diagnose_on_the_command_line(pairs, tmp_path, monkeypatch, caplog):
    import contextlib
    import logging

    import grm.eval.cli

    caplog.set_level(logging.INFO, logger="grm")

    loaded = []

    @contextlib.contextmanager
    def fake_open(args):
        loaded.append(args)
        yield marker_grm(), None

    monkeypatch.setattr(grm.eval.cli, "open_scorer", fake_open)
    out = tmp_path / "out"
    args = ["eval", "--benchmark", "rewardbench", "--data", str(pairs), "--output", str(out), "--bootstrap", "20"]
    assert main([*args, "--diagnose", "length,position,injection", "--diagnose-sample", "4"]) == 0
    assert "## Diagnostics" in (out / "report.md").read_text()
    assert (out / "judgements.diagnostics.jsonl").exists()
    result = json.loads((out / "result.json").read_text())
    assert result["diagnostics"]["injection"]["counts"]["items"] == 4
    assert "injection diagnostic: flip_rate 0.0% (4 items)" in caplog.text
    loaded.clear()
    assert main([*args, "--diagnose", "length,speed"]) == 2 and loaded == [], "refused before loading a model"
    assert "unknown diagnostics ['speed']" in caplog.text
    assert main([*args, "--diagnose", "position", "--diagnose-sample", "0"]) == 2 and loaded == []


class SeedDrivenBackend:
    """Each sample scores each shown response by a hash of the response and the sample's engine seed (sample ``i``
    of a request seeded ``s`` has the seed ``s + i``): results follow the seeds grm hands out, nothing else."""

    def generate(self, requests):
        def text(messages, seed):
            digits = [hashlib.sha256(f"{seed}|{r}".encode()).digest()[0] % 10 + 1 for r in shown_responses(messages)]
            return f"Scores: \\boxed{{{', '.join(map(str, digits))}}}"

        return [[Completion(text(r.messages, r.sampling.seed + i), 7, "stop") for i in range(r.n)] for r in requests]


def test_scores_and_rescores_are_keyed_by_item_not_by_chunk(pairs, tmp_path):
    """Every item and every re-scored variant is seeded by the run's seed and its own key: the caches are the same
    whatever the chunk size, and differ with the seed."""

    def caches(name, chunk_size, seed):
        cache = tmp_path / f"{name}.jsonl"
        options = ScoringOptions(k=3, seed=seed)
        run(
            "rewardbench",
            pairs,
            GRM(SeedDrivenBackend()),
            options=options,
            cache=cache,
            chunk_size=chunk_size,
            diagnose="position,injection",
        )
        rows = [
            json.loads(line)
            for path in (cache, cache.with_suffix(".diagnostics.jsonl"))
            for line in path.read_text().splitlines()
        ]
        return {row["id"]: row["reward"] for row in rows}

    whole = caches("whole", 32, seed=7)
    assert len(whole) == 5 + 5 * (2 + len(PAYLOADS)), "five items, and each re-scored as given, reversed, attacked"
    assert caches("ones", 1, seed=7) == whole
    assert caches("twos", 2, seed=7) == whole
    assert caches("other-seed", 32, seed=8) != whole
