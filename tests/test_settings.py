"""grm.settings: the settings recorded beside a resumable output, and the refusal of a resume with others."""

import json

import pytest

from grm.settings import SettingsMismatch, read_settings, resolve_settings, settings_path, write_settings


def test_a_new_output_takes_the_settings_and_draws_a_seed(tmp_path):
    out = tmp_path / "out.jsonl"
    first = resolve_settings(out, {"k": 2, "seed": None, "columns": ("a", "b")}, started=False)
    second = resolve_settings(out, {"k": 2, "seed": None}, started=False)
    assert isinstance(first["seed"], int) and first["seed"] != second["seed"]  # two fresh draws
    assert first["columns"] == ["a", "b"]  # as JSON gives it back, so that a record compares equal
    assert resolve_settings(out, {"k": 2, "seed": 7}, started=False)["seed"] == 7
    assert not settings_path(out).exists()  # resolving writes nothing


def test_a_resume_goes_on_with_the_recorded_seed_and_refuses_other_settings(tmp_path):
    out = tmp_path / "out.jsonl"
    settings = resolve_settings(out, {"model": None, "k": 8, "seed": None, "temperature": 0.5}, started=False)
    write_settings(out, settings)
    assert settings_path(out) == tmp_path / "out.jsonl.settings.json"
    assert json.loads(settings_path(out).read_text())["settings"] == settings == read_settings(out)
    again = resolve_settings(out, {"model": None, "k": 8, "seed": None, "temperature": 0.5}, started=True)
    assert again == settings  # the unseeded resume reuses the seed drawn first
    with pytest.raises(SettingsMismatch) as refused:
        resolve_settings(out, {"model": "m", "k": 2, "seed": 1, "temperature": 0.5}, started=True, restart="do X")
    message = str(refused.value)
    assert refused.value.differences == [("model", None, "m"), ("k", 8, 2), ("seed", settings["seed"], 1)]
    assert "k: 8 then, 2 now" in message and 'model: null then, "m" now' in message and message.endswith("Do X.")
    with pytest.raises(SettingsMismatch, match="new_option: null then, true now"):  # a setting added since
        resolve_settings(out, {**settings, "new_option": True}, started=True)


def test_an_output_with_rows_and_no_record_is_refused_and_a_bad_record_is_named(tmp_path):
    out = tmp_path / "old.jsonl"
    with pytest.raises(SettingsMismatch, match="holds rows but no record of the settings") as refused:
        resolve_settings(out, {"k": 1, "seed": 0}, started=True)
    assert refused.value.differences == [] and "delete" in str(refused.value)
    settings_path(out).write_text("[1, 2]")
    with pytest.raises(ValueError, match="old.jsonl.settings.json: not a grm settings file"):
        resolve_settings(out, {"k": 1, "seed": 0}, started=True)
    assert resolve_settings(out, {"k": 1, "seed": 0}, started=False) == {"k": 1, "seed": 0}  # no rows: a new output
    with pytest.raises(ValueError, match="finite"):
        resolve_settings(out, {"risk": float("nan"), "seed": 0}, started=False)
