"""``grm.eval.cache``: an evaluation's cache rows, read back, and the settings they were made with, recorded beside
them and checked when the cache is opened again."""

import json
import logging
import re

import pytest
from eval_helpers import marker_grm, marker_scalar

from grm import Judgement, Reward, ScoringOptions
from grm.eval import EvalItem
from grm.eval.cache import FRESH, EvalCache, cache_row, match, read_cache
from grm.eval.plan import plan_evaluation
from grm.eval.scoring import scorer_settings
from grm.settings import SettingsMismatch, read_settings, settings_path

ITEM = EvalItem("q", ["a [q9]", "b [q2]"], [1.0, 0.0], id="7", subset="alpacaeval-easy")
SETTINGS = {"benchmark": "rewardbench", "scorer": "grm", "k": 2, "seed": 5, "temperature": None}


def reward(n: int = 2, meta: list[float] | None = None) -> Reward:
    judgements = [Judgement(text="x", scores=[9, 2], n_tokens=5) for _ in range(n)]
    return Reward([9.0 * n, 2.0 * n], 0, judgements, n, [9.0, 2.0], list(range(n)), meta, n_retries=1, seed=3)


def written(path, settings=SETTINGS):
    with EvalCache(path, settings) as cache:
        cache.write(cache_row(ITEM, reward(2, [0.5, 0.1]), 2, adaptive=False))
        cache.write(cache_row(EvalItem("q", ["x", "y"], [1.0, 0.0], id="8"), [0.1, 0.9], 1, adaptive=False))
    return path


def test_rows_round_trip_to_what_the_metrics_need(tmp_path):
    path = written(tmp_path / "c.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["k"] == 2 and rows[0]["reward"]["judgements"][0]["text"] == "x" and "adaptive" not in rows[0]
    assert rows[1] == {"id": "8", "subset": "all", "scores": [0.1, 0.9]}
    cached = read_cache(path)
    assert cached["7"].judgements == [Judgement(text="", scores=[9, 2])] * 2, "texts dropped as they are read"
    assert (cached["7"].k, cached["7"].meta, cached["7"].n_drawn, cached["7"].n_tokens) == (2, [0.5, 0.1], 3, 10)
    assert cached["7"].vote.best == 0 and cached["8"].k is None and cached["8"].vote is None
    assert cache_row(ITEM, reward(1), 4, adaptive=True)["adaptive"] is True
    assert read_settings(path) == SETTINGS and settings_path(path).name == "c.jsonl.settings.json"


def test_take_pops_each_cached_item_once_and_the_rest_is_a_warning(tmp_path, caplog):
    cache = EvalCache(written(tmp_path / "c.jsonl"), SETTINGS)
    judged = cache.take(ITEM)
    assert judged.id == "7" and judged.lengths == [6, 6] and judged.n_drawn == 3 and judged.vote.mean == [9.0, 2.0]
    assert cache.take(ITEM) is None, "each cached item is taken once"
    with caplog.at_level(logging.WARNING):
        cache.warn_unused()
    assert "1 cached items are not in this data" in caplog.text


def test_opening_a_cache_made_with_other_settings_names_each_difference_and_how_to_start_afresh(tmp_path):
    path = written(tmp_path / "c.jsonl")
    with pytest.raises(SettingsMismatch) as refused:
        EvalCache(path, {**SETTINGS, "k": 4, "temperature": 0.7})
    message = str(refused.value)
    assert "\n  k: 2 then, 4 now\n  temperature: null then, 0.7 now\n" in message
    assert message.endswith(f"Delete {path} to start afresh, or pass another cache (grm eval: another --output).")
    assert refused.value.differences == [("k", 2, 4), ("temperature", None, 0.7)]
    settings_path(path).unlink()
    with pytest.raises(SettingsMismatch, match="holds rows but no record of the settings that produced them"):
        EvalCache(path, SETTINGS)


def test_a_seed_of_none_is_the_recorded_one_and_a_new_cache_draws_and_records_one(tmp_path):
    path = written(tmp_path / "c.jsonl")
    assert EvalCache(path, {**SETTINGS, "seed": None}).settings["seed"] == 5
    fresh = tmp_path / "fresh.jsonl"
    with EvalCache(fresh, {**SETTINGS, "seed": None}) as cache:
        drawn = cache.settings["seed"]
    assert isinstance(drawn, int) and read_settings(fresh)["seed"] == drawn
    assert isinstance(EvalCache(None, {"seed": None}).settings["seed"], int)


def test_without_a_path_nothing_is_read_or_written(tmp_path):
    with EvalCache(None, SETTINGS) as cache:
        cache.write({"id": "1"})
        assert cache.take(ITEM) is None and cache.entries == {}
    assert list(tmp_path.iterdir()) == []


def test_a_row_for_another_number_of_responses_is_refused_naming_the_item(tmp_path):
    path = written(tmp_path / "c.jsonl")
    cached = read_cache(path)
    three = EvalItem("q", ["x", "y", "z"], [1.0, 0.0, 0.0], id="8")
    with pytest.raises(
        ValueError, match=f"^here has cached scores for other than its 3 responses; {re.escape(FRESH)}$"
    ):
        match(cached["8"], three, where="here")


def test_the_recorded_settings_are_what_changes_the_judgements():
    plan = plan_evaluation("rewardbench", marker_grm(), ScoringOptions(k=2, max_retries=1), chunk_size=7)
    settings = plan.settings("seed=1,n=2", split=None, name=None, model=scorer_settings(marker_grm()))
    assert settings["benchmark"] == "rewardbench" and settings["data"] == "seed=1,n=2" and settings["scorer"] == "grm"
    assert (settings["k"], settings["max_retries"], settings["max_new_tokens"]) == (2, 1, 1024), "option, else model's"
    assert (settings["backend"], settings["judge"], settings["chunk_size"]) == ("ScriptedBackend", "spct", None)
    budgeted = plan_evaluation("rewardbench", marker_grm(), None, {"budget": 0.5}, chunk_size=7)
    assert budgeted.settings("d", split=None, name=None, model={})["chunk_size"] == 7, "a budget is per chunk"
    assert scorer_settings(marker_scalar) == {"scorer": "scalar", "function": "eval_helpers.marker_scalar"}


def test_a_foreign_file_is_not_taken_for_a_cache(tmp_path):
    foreign = tmp_path / "f.jsonl"
    foreign.write_text('{"id": "1", "rewards": [1, 2]}\n')
    with pytest.raises(ValueError, match="neither 'reward' nor 'scores'; not a grm eval cache"):
        EvalCache(foreign, SETTINGS)
