"""``grm.eval.evaluate`` end to end with a scripted GRM: official scores by hand, caching, resume, reports."""

import json
import sys

import pytest
from eval_helpers import FIXTURES, marker, marker_grm, run, scripted

from grm import GRM, ScoringOptions
from grm.eval import get_benchmark, write_report
from grm.eval.cache import EvalCache, cache_row
from grm.eval.plan import plan_evaluation
from grm.eval.reading import ItemReader
from grm.eval.runner import Judging, check_cache
from grm.eval.scoring import judge
from grm.settings import SettingsMismatch, read_settings, settings_path
from helpers import ScriptedBackend, judge_by, shown_responses

RB = FIXTURES / "rewardbench.jsonl"


def test_rewardbench_sections_by_hand():
    r = run("rewardbench", RB, marker_grm())
    s = r.scores["voting"]
    # right: alpacaeval-easy, mt-bench-hard, refusals-dangerous, xstest-should-respond, math-prm
    assert s["groups/Chat"] == pytest.approx(100 / 140)  # alpacaeval-easy (100) right, mt-bench-med (40) wrong
    assert s["groups/Chat Hard"] == pytest.approx(37 / 137)  # mt-bench-hard (37) right, llmbar-natural wrong
    assert s["groups/Safety"] == 1.0
    assert s["groups/Reasoning"] == pytest.approx(984 / 1148)  # math-prm right, hep-python (164) wrong
    assert r.headline == s["overall"] == pytest.approx((100 / 140 + 37 / 137 + 1 + 984 / 1148) / 4)
    assert s["accuracy"] == 5 / 8 and r.n_items == 8 and r.subset_sizes["math-prm"] == 1
    assert (r.k, r.n_judgements, r.n_invalid, list(r.scores)) == (1, 8, 0, ["voting"])


def test_rmb_groups_and_overall_by_hand():
    r = run("rmb", FIXTURES / "rmb_clone", marker_grm(), draws=16)
    s = r.scores["voting"]
    assert s["groups/Harmlessness Pairwise"] == 1.0  # a whitespace-only reject loses to the chosen refusal
    assert s["groups/Harmlessness BoN"] == 0.5  # bon/2: a loser outscores bon_best; bon/3 right
    # identical chosen/reject (pairwise/1) and bon_best == a loser (bon/1) are ties, right half the time
    assert 2 / 4 <= s["groups/Helpfulness Pairwise"] <= 3 / 4  # pairwise/0, /5 right, /2 wrong, /1 tie
    assert 1 / 2 <= s["groups/Helpfulness BoN"] <= 1  # bon/0 right, bon/1 tie
    assert 0.2 < s["subsets/Pairwise_set/Helpfulness/Closed QA/OptionBased"] - 0.5 < 0.5
    groups = [s[f"groups/{g}"] for g in ("Helpfulness BoN", "Helpfulness Pairwise", "Harmlessness BoN")]
    assert s["overall"] == pytest.approx((sum(groups) + 1.0) / 4)


def test_ppe_and_realmistake_by_hand(tmp_path):
    pref = run("ppe-preference", FIXTURES / "ppe_preference.jsonl", marker_grm())
    expected = {"headline": 2 / 3, "overall": 2 / 3, "subsets/English": 1.0, "subsets/Chinese": 0.0}
    assert pref.scores["voting"] == pytest.approx(expected)
    corr = run("ppe-correctness", FIXTURES / "ppe_correctness", marker_grm())
    assert corr.scores["voting"]["overall"] == 0.5  # m1/a picks a correct response, m1/b an incorrect one
    mistake = run("realmistake", FIXTURES / "realmistake", marker_grm(), k=2)
    s = mistake.scores["voting"]
    assert mistake.metric == "roc_auc"
    assert s["subsets/math_word_problem_generation"] == 0.75  # no-error 8 vs errors 3 and 8 (a tie): 1.5 / 2
    assert s["subsets/answerability_classification"] == 0.5  # no-errors 6 and 9 vs error 7
    assert s["overall"] == pytest.approx(6.5 / 9)
    assert mistake.curves["voting"][1]["overall"] == pytest.approx(6.5 / 9)


def test_scalar_reward_function():
    seen = []

    def scalar(messages, responses):
        seen.append(messages)
        return [marker(r) / 10 for r in responses]

    r = run("rewardbench", RB, scalar)
    assert r.scores["voting"]["overall"] == run("rewardbench", RB, marker_grm()).scores["voting"]["overall"]
    assert seen[0] == [{"role": "user", "content": "Name a primary colour."}] and r.config["scorer"] == "scalar"
    with pytest.raises(ValueError, match="k must be >= 1 for a GRM and 1 for a scalar"):
        run("rewardbench", RB, scalar, k=2)
    with pytest.raises(ValueError, match="returned 1 scores for 2 responses"):
        run("rewardbench", RB, lambda m, r: [1.0])


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_loses_nothing_and_recomputes_nothing(tmp_path, caplog):
    cache = tmp_path / "judgements.jsonl"
    calls = []

    def script(messages, sample):
        calls.append(shown_responses(messages))
        if len(calls) > 3 * 2:  # the second chunk of three items dies (k=2 samples each)
            raise Crash("killed")
        return judge_by(marker)(messages, sample)

    with pytest.raises(Crash):  # unseeded: a seed is drawn and recorded beside the cache
        run("rmb", FIXTURES / "rmb_clone", GRM(ScriptedBackend(script)), k=2, cache=cache, chunk_size=3, seed=None)
    before = cache.read_text().splitlines()
    assert len(before) == 3, "the first chunk's judgements were saved as they were made"
    cache.write_text("\n".join(before) + "\n" + before[-1][:50])  # and the crash left half a line
    seed = read_settings(cache)["seed"]
    assert isinstance(seed, int) and json.loads(before[0])["reward"]["seed"] == seed

    backend = ScriptedBackend(judge_by(marker))
    with caplog.at_level("INFO"):
        resumed = run("rmb", FIXTURES / "rmb_clone", GRM(backend), k=2, cache=cache, chunk_size=3, seed=None)
    assert f"seed {seed} (of the cache resumed" in caplog.text and resumed.config["seed"] == seed
    assert sum(r.n for call in backend.calls for r in call) == 7 * 2, "only the 7 missing items were judged"
    after = cache.read_text().splitlines()
    assert after[:3] == before, "cached judgements are kept as they were"
    assert len(after) == 10 and len({json.loads(x)["id"] for x in after}) == 10
    assert {json.loads(x)["reward"]["seed"] for x in after} == {seed}, "the resumed items have the recorded seed"
    clean = run("rmb", FIXTURES / "rmb_clone", marker_grm(), k=2, chunk_size=3, seed=seed)
    assert resumed.scores == clean.scores and resumed.curves == clean.curves

    backend = ScriptedBackend(judge_by(marker))
    again = run("rmb", FIXTURES / "rmb_clone", GRM(backend), k=2, cache=cache, seed=None)
    assert backend.calls == [], "a finished run recomputes nothing"
    assert again.scores == clean.scores
    with pytest.raises(SettingsMismatch, match="\n  k: 2 then, 4 now\nDelete .*judgements.jsonl to start afresh"):
        run("rmb", FIXTURES / "rmb_clone", marker_grm(), k=4, cache=cache, seed=None)
    with pytest.raises(SettingsMismatch, match=f"\n  seed: {seed} then, {seed + 1} now\n"):
        run("rmb", FIXTURES / "rmb_clone", marker_grm(), k=2, cache=cache, seed=seed + 1)
    with pytest.raises(SettingsMismatch, match='\n  scorer: "grm" then, "scalar" now\n'):
        run("rmb", FIXTURES / "rmb_clone", lambda m, r: [0.0] * len(r), cache=cache, seed=None)


def test_a_cache_without_a_record_of_its_settings_is_refused(tmp_path):
    cache = tmp_path / "judgements.jsonl"
    run("rmb", FIXTURES / "rmb_clone", marker_grm(), cache=cache)
    settings_path(cache).unlink()  # as a cache written before grm recorded settings
    with pytest.raises(SettingsMismatch, match="holds rows but no record of the settings"):
        run("rmb", FIXTURES / "rmb_clone", marker_grm(), cache=cache)
    cache.write_text("")
    assert run("rmb", FIXTURES / "rmb_clone", marker_grm(), cache=cache).n_items == 10, "an empty cache starts afresh"
    assert read_settings(cache)["k"] == 1


class MarkerMeta:
    """A meta RM that rates a judgement 1 when its scores equal the fixture's tags, else 0 (and counts its calls)."""

    calls = 0

    def score_batch(self, entries):
        self.calls += 1
        return [[float(j.scores == [marker(r) for r in responses]) for j in js] for _, responses, js in entries]


def noisy_grm() -> GRM:
    """A judge whose odd samples score every response 10 - tag (wrong), even samples the tag."""

    def script(messages, sample):
        flip = (lambda s: 10 - s) if sample % 2 else (lambda s: s)
        scores = ", ".join(str(flip(marker(r))) for r in shown_responses(messages))
        return f"Specific Criteria:\n1. **X** (Weight: 100%): x.\n\nAnalysis:\nx.\n\nScores: \\boxed{{{scores}}}"

    return GRM(ScriptedBackend(script))


def test_meta_rm_curves_from_cached_meta_scores(tmp_path):
    cache = tmp_path / "c.jsonl"
    r = run("rewardbench", RB, noisy_grm(), k=4, meta_rm=MarkerMeta(), k_meta=2, cache=cache, shuffle=False)
    # every item: two judgements that follow the tags and two mirrored ones. Summed, every response gets 20:
    # a coin flip. The meta RM keeps the two that follow the tags, which get 5 of the 8 items right.
    assert r.scores["metarm"]["accuracy"] == 5 / 8 and r.mode == "metarm"
    assert r.scores["voting"]["accuracy"] == pytest.approx(0.5, abs=0.25)
    assert set(r.curves) == {"voting", "metarm"} and sorted(r.curves["metarm"]) == [1, 2, 3, 4]
    assert r.curves["voting"][1]["accuracy"] == pytest.approx(0.5, abs=0.2)
    assert json.loads(cache.read_text().splitlines()[0])["reward"]["meta_scores"] == [1.0, 0.0, 1.0, 0.0]

    backend, meta = ScriptedBackend(judge_by(marker)), MarkerMeta()
    again = run("rewardbench", RB, GRM(backend), k=4, meta_rm=meta, k_meta=2, cache=cache, shuffle=False)
    assert backend.calls == [] and meta.calls == 0, "judgements and meta scores come from the cache"
    assert again.scores["metarm"] == r.scores["metarm"]


def test_report_files(tmp_path):
    r = run("rewardbench", RB, noisy_grm(), k=3, meta_rm=MarkerMeta(), n_bootstrap=100)
    paths = write_report(r, tmp_path / "report")
    data = json.loads(paths["json"].read_text())
    assert data["scores"]["voting"]["overall"] == pytest.approx(r.scores["voting"]["overall"])
    assert sorted(data["curves"]["metarm"]) == ["1", "2", "3"]
    assert len(data["intervals"]["voting"]["groups/Chat"]) == 2
    md = paths["markdown"].read_text()
    assert f"# rewardbench: {100 * r.headline:.1f}% overall, MetaRM@3" in md
    assert "| score | Voting@3 | 95% CI | MetaRM@3 | 95% CI |" in md
    assert "| Chat Hard |" in md and "| math-prm | 1 |" in md and "![rewardbench voting@k](curves.png)" in md
    png = paths["curves"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_without_matplotlib_the_report_has_no_plot(tmp_path, monkeypatch, caplog):
    """matplotlib comes with the ``eval`` extra: without it, result.json and report.md are still written."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    r = run("rewardbench", RB, marker_grm())
    with caplog.at_level("WARNING"):
        paths = write_report(r, tmp_path / "report")
    assert sorted(paths) == ["json", "markdown"] and not (tmp_path / "report" / "curves.png").exists()
    assert "curves.png" not in paths["markdown"].read_text() and "grm[eval]" in caplog.text


def test_bad_inputs(tmp_path):
    dup = tmp_path / "dup.jsonl"
    dup.write_text(RB.read_text().splitlines()[0] + "\n" + RB.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="duplicate item id '1'"):
        run("rewardbench", dup, marker_grm())
    with pytest.raises(ValueError, match="meta_rm needs a GRM scorer"):
        run("rewardbench", RB, lambda m, r: [0.0, 1.0], meta_rm=MarkerMeta())
    with pytest.raises(TypeError, match="scorer must be a GRM or a callable"):
        run("rewardbench", RB, "not a model")
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"id": "1", "rewards": [1, 2]}\n')
    with pytest.raises(ValueError, match="neither 'reward' nor 'scores'; not a grm eval cache"):
        run("rewardbench", RB, marker_grm(), cache=foreign)
    limited = run("rewardbench", RB, marker_grm(), limit=3)
    assert limited.n_items == 3 and "overall" not in limited.scores["voting"]
    assert limited.headline_key == "accuracy" and limited.headline == 2 / 3


def test_scoring_options_go_whole_or_by_keyword():
    """``evaluate`` takes a ScoringOptions whole or its fields by keyword, passes them on whole to ``score_batch``,
    and records every option in the config; a benchmark shown in a fixed order turns shuffling off."""
    grm, backend = scripted(lambda shown: [marker(x) for x in shown])
    whole = run("rmb", FIXTURES / "rmb_clone", grm, options=ScoringOptions(k=2, seed=3, temperature=0.7))
    temperatures = {req.sampling.temperature for call in backend.calls for req in call}
    assert temperatures == {0.7}
    keyword = run("rmb", FIXTURES / "rmb_clone", marker_grm(), k=2, seed=3, temperature=0.7)
    assert whole.scores == keyword.scores and whole.config == keyword.config
    assert whole.config["temperature"] == 0.7 and whole.config["shuffle"] is True and whole.config["seed"] == 3
    judgebench = run("judgebench", FIXTURES / "judgebench", marker_grm(), options=ScoringOptions(k=2))
    assert judgebench.config["shuffle"] is False
    unseeded = run("rmb", FIXTURES / "rmb_clone", marker_grm(), seed=None)
    assert isinstance(unseeded.config["seed"], int), "a seed is drawn and recorded"
    with pytest.raises(TypeError, match=r"unknown scoring option\(s\) \['kk'\]"):
        run("rmb", FIXTURES / "rmb_clone", marker_grm(), kk=2)
    with pytest.raises(ValueError, match=r"options \['temperature'\] apply to a GRM only"):
        run("rmb", FIXTURES / "rmb_clone", lambda m, r: [0.0] * len(r), temperature=0.3)


def test_read_items_stops_at_the_limit_without_reading_on(tmp_path):
    data = tmp_path / "rb.jsonl"
    data.write_text("".join(RB.read_text().splitlines(keepends=True)[:2]) + "{not json\n")
    bench = get_benchmark("rewardbench")
    assert [it.id for it in ItemReader(bench, data, limit=2)] == ["1", "2"]
    with pytest.raises(ValueError, match="rb.jsonl line 3: not valid JSON"):
        list(ItemReader(bench, data))


def test_judging_scores_chunks_of_the_uncached_items_in_order_and_takes_the_cached_ones(tmp_path):
    items = list(ItemReader(get_benchmark("rewardbench"), RB))
    grm, backend = scripted(lambda shown: [marker(x) for x in shown])
    plan = plan_evaluation("rewardbench", grm, ScoringOptions(k=1, seed=0), chunk_size=2)
    path, settings = tmp_path / "c.jsonl", {"k": 1, "seed": 0}
    with EvalCache(path, settings) as cache:
        cache.write(cache_row(items[2], judge(grm, [items[2]], plan.options)[0], 1, adaptive=False))
    backend.calls.clear()
    with EvalCache(path, settings) as cache:
        judging = Judging(plan, grm, None, cache)
        for n, item in enumerate(items):
            judging.add(item)
            assert judging.done == [0, 2, 3, 3, 5, 5, 7, 7][n], "a chunk is scored as soon as it is full"
        with pytest.raises(RuntimeError, match="flush"):
            judging.result(RB)
        judging.flush()
    judged = judging.result(RB)
    assert [len(call) for call in backend.calls] == [2, 2, 2, 1] and judging.n_cached == 1
    assert [j.id for j in judged] == [it.id for it in items] and all(j.vote is not None for j in judged)
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [
        "3",
        "1",
        "2",
        "4",
        "5",
        "6",
        "7",
        "8",
    ]


def test_judging_nothing_is_an_error_naming_the_data(tmp_path):
    plan = plan_evaluation("rewardbench", marker_grm())
    with EvalCache(None, {}) as cache:
        with pytest.raises(ValueError, match="empty.jsonl: no rewardbench items"):
            Judging(plan.seeded(0), marker_grm(), None, cache).result(tmp_path / "empty.jsonl")


def test_a_rewardbench_section_missing_from_the_data_is_a_warning(caplog, tmp_path):
    with caplog.at_level("WARNING"):
        full = run("rewardbench", RB, marker_grm())
    assert "section Chat lacks subsets ['alpacaeval-length'" in caplog.text
    assert not any("absent from the data" in w for w in full.warnings) and full.headline_key == "overall"
    caplog.clear()
    with caplog.at_level("WARNING"):
        part = run("rewardbench", RB, marker_grm(), limit=3)  # Chat, Chat Hard and Safety items only
    assert "section Reasoning is absent from the data" in caplog.text and "no overall score" in caplog.text
    assert part.headline_key == "accuracy" and part.headline == part.scores["voting"]["accuracy"]
    report = write_report(part, tmp_path)["markdown"].read_text()
    assert "| warning | section Reasoning is absent from the data" in report


def test_the_headline_is_one_key_in_every_mode_curve_and_interval_and_a_fraction_in_json(tmp_path):
    r = run("rewardbench", RB, noisy_grm(), k=2, meta_rm=MarkerMeta(), k_meta=1)
    for mode in ("voting", "metarm"):
        assert r.scores[mode]["headline"] == r.scores[mode]["overall"]
        assert r.intervals[mode]["headline"] == r.intervals[mode]["overall"]
        assert all(curve["headline"] == curve["overall"] for curve in r.curves[mode].values())
    data = json.loads(write_report(r, tmp_path)["json"].read_text())
    assert (data["headline"], data["headline_key"], data["mode"], data["unit"]) == (
        r.headline,
        "overall",
        "metarm",
        "fraction",
    )
    assert list(data)[:4] == ["headline", "headline_key", "mode", "unit"] and 0 <= data["headline"] <= 1


def test_check_cache_refuses_before_any_model_what_evaluate_would_refuse(tmp_path):
    cache = tmp_path / "judgements.jsonl"
    model = {"model": "/models/a", "backend": "vllm", "template": None}
    run("rmb", FIXTURES / "rmb_clone", marker_grm(), k=2, cache=cache, model=model)
    assert read_settings(cache)["model"] == "/models/a" and read_settings(cache)["backend"] == "vllm"
    check_cache("rmb", FIXTURES / "rmb_clone", cache, k=2, seed=0, model=model)  # the same settings: no refusal
    with pytest.raises(SettingsMismatch, match='\\n  model: "/models/a" then, "/models/b" now\\n'):
        check_cache("rmb", FIXTURES / "rmb_clone", cache, k=2, seed=0, model={**model, "model": "/models/b"})
    with pytest.raises(SettingsMismatch, match="\\n  k: 2 then, 3 now\\n"):
        check_cache("rmb", FIXTURES / "rmb_clone", cache, ScoringOptions(k=3), model=model)
    with pytest.raises(ValueError, match="draws and chunk_size must be >= 1"):
        check_cache("rmb", FIXTURES / "rmb_clone", cache, model=model, chunk_size=0)
    check_cache("rmb", FIXTURES / "rmb_clone", tmp_path / "new.jsonl", model=model)
    assert not (tmp_path / "new.jsonl").exists() and not settings_path(tmp_path / "new.jsonl").exists()
