"""Loading a GRM from a model folder or a hub id: an untrusted grm_config.json (paths outside the folder, links,
bad ranges) is refused at load; a folder's own template, built-in template names and a hub cache's config load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grm import GRM


def _folder(tmp_path: Path, config: dict, name: str = "model") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "grm_template.j2").write_text("{#- grm: score_range=0,5 -#}{{ query }} {{ responses | join('|') }}")
    (folder / "grm_config.json").write_text(json.dumps(config))
    return folder


def _load(path) -> GRM:
    return GRM.from_pretrained(str(path), "openai", base_url="http://127.0.0.1:9/v1", progress=False)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"template": "/etc/passwd"}, "must be a file inside the model folder"),
        ({"template": "../outside.j2"}, "must be a file inside the model folder"),
        ({"template": "link.j2"}, "links to a file outside the model folder"),
        ({"template": "nowhere.j2"}, "neither a file in the model folder nor a built-in"),
        ({"template": 5}, "template must be a file name"),
        ({"score_range": [10, 1]}, "low <= high, got [10, 1]"),
        ({"score_range": [1]}, "score_range must be two integers"),
        ({"score_range": ["1", "10"]}, "score_range must be two integers"),
        ({"score_range": "1,10"}, "score_range must be two integers"),
        ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
    ],
)
def test_untrusted_model_folders_are_refused_at_load(tmp_path, config, message):
    (tmp_path / "outside.j2").write_text("{{ query }}")
    folder = _folder(tmp_path, config)
    (folder / "link.j2").symlink_to(tmp_path / "outside.j2")
    with pytest.raises(ValueError, match="grm_config.json: .*" + message.replace("[", r"\[")):
        _load(folder)


def test_a_model_folder_template_and_built_in_names_load(tmp_path):
    rm = _load(_folder(tmp_path, {"template": "grm_template.j2", "max_new_tokens": 64}))
    assert rm.score_range == (0, 5) and rm.max_new_tokens == 64
    assert _load(_folder(tmp_path, {"template": "correctness"}, "other")).score_range == (0, 1)


def test_a_model_loaded_by_hub_id_reads_its_cached_grm_config(tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--someone--tiny-grm"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    blobs = repo / "blobs"
    blobs.mkdir()
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    files = {
        "grm_template.j2": "{#- grm: score_range=0,5 -#}{{ query }}",
        "grm_config.json": json.dumps({"template": "grm_template.j2", "max_new_tokens": 48}),
    }
    for name, text in files.items():  # as huggingface_hub stores them: links into blobs/
        (blobs / name).write_text(text)
        (snapshot / name).symlink_to(Path("../..") / "blobs" / name)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    rm = _load("someone/tiny-grm")
    assert rm.template.source == files["grm_template.j2"] and rm.score_range == (0, 5) and rm.max_new_tokens == 48
    assert _load("someone/other").template.name == "default"  # nothing cached: the defaults


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'a' * 10**9 }}",
        "{{ query * 100000000 }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for a in query * 999 %}{% for b in responses[0] %}{% endfor %}{% endfor %}",  # loops over strings
        "{% for c in [1] recursive %}{% if loop.depth < 3 %}{{ loop(range(99999)) }}{% endif %}{% endfor %}",
        "{{ 'x' | center(1000000000) }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ 2 ** 100000000 }}",
        "{% for i in range(99999) %}{{ responses | join('') * 10 }}{% endfor %}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    ],
)
def test_a_model_folder_template_that_would_exhaust_time_or_memory_stops_with_a_template_error(tmp_path, source):
    """A template from an untrusted folder renders within bounds (loop steps, sizes, output) or fails naming
    itself: never a hang, never gigabytes."""
    import time

    from grm import TemplateError
    from helpers import BOUND_S

    folder = _folder(tmp_path, {"template": "grm_template.j2"})
    (folder / "grm_template.j2").write_text(source)
    rm = _load(folder)
    start = time.thread_time()
    with pytest.raises(TemplateError, match="grm_template.j2"):
        rm.build_prompt("q" * 1000, ["r" * 100_000, "s"])
    assert time.thread_time() - start < BOUND_S
