"""Models shipped inside the grm package, and the ``grm_config.json`` a model folder may carry.

``default_grm/`` and ``default_meta_rm/`` hold a tiny GRM and meta RM trained from scratch with grm's own SPCT
pipeline (``grm train default-grm``) on the synthetic judging task of :mod:`grm.training.synthetic`:
``GRM.from_pretrained()`` and ``MetaRM.from_pretrained()`` with no argument load them. They judge only that
task's kinds of question (sums, unit conversions, ordering, largest number).

A model folder's ``grm_config.json`` records how the model was trained to be prompted, so that a checkpoint
carries its exact training prompt: ``judge`` (a judge format's name, see :mod:`grm.judges`), ``template`` (a
``.j2`` file in the folder, or a built-in template name), ``score_range`` and ``max_new_tokens``.
:meth:`grm.GRM.from_pretrained` uses it for what the caller leaves unset.
A model folder is untrusted input: :func:`read_grm_config` refuses a template path that leads out of the folder
and a malformed score range at load time.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from grm.prompts import BUILTIN_TEMPLATES
from grm.types import brief, normalize_score_range

GRM_CONFIG_FILE = "grm_config.json"
CONFIG_KEYS = ("judge", "template", "score_range", "max_new_tokens")
TEMPLATE_FILE = "grm_template.j2"
"""The name a template is copied to inside a model folder by :func:`write_grm_config`."""


def default_grm_path() -> Path:
    """The folder of the default GRM shipped with grm."""
    return _asset("default_grm")


def default_meta_rm_path() -> Path:
    """The folder of the default meta RM shipped with grm."""
    return _asset("default_meta_rm")


def _asset(name: str) -> Path:
    path = Path(str(resources.files("grm.assets").joinpath(name)))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the shipped model {name!r} is missing from {path}; reinstall grm, or rebuild it with "
            "`grm train default-grm --config training/configs/default_grm.yaml`"
        )
    return path


def read_grm_config(path: str | Path) -> dict[str, Any]:
    """The ``grm_config.json`` of a model folder or hub id, checked: ``judge`` a name, ``template`` a file inside
    the folder (given as its path) or a built-in template name, ``score_range`` a ``(low, high)`` tuple of
    integers, ``max_new_tokens`` a positive integer; ValueError naming the file and the problem otherwise. ``{}`` when
    there is none.

    A hub id's file is looked up in the local Hugging Face cache only, without network (download the repository,
    e.g. ``huggingface-cli download ID``, for it to be found)."""
    found = _config_file(path)
    if found is None:
        return {}
    file, root = found
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{file}: expected a JSON object with template, score_range, max_new_tokens")
    unknown = set(config) - set(CONFIG_KEYS)
    if unknown:
        raise ValueError(f"{file}: unknown keys {sorted(unknown)}; expected {', '.join(CONFIG_KEYS)}")
    if "judge" in config and (not isinstance(config["judge"], str) or not config["judge"]):
        raise ValueError(f"{file}: judge must be the name of a judge format, got {brief(config['judge'])}")
    if "template" in config:
        config["template"] = _template(file, root, config["template"])
    if "score_range" in config:
        try:
            config["score_range"] = normalize_score_range(config["score_range"])
        except ValueError as e:
            raise ValueError(f"{file}: {e}") from None
    tokens = config.get("max_new_tokens")
    if "max_new_tokens" in config and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        raise ValueError(f"{file}: max_new_tokens must be a positive integer, got {brief(tokens)}")
    return config


def _config_file(path: str | Path) -> tuple[Path, Path] | None:
    """``(grm_config.json, the folder its template must stay in)`` for a local folder, or for a hub id whose
    repository is in the local Hugging Face cache (whose snapshot files link into the repository's cache folder)."""
    folder = Path(path)
    if folder.is_dir():
        file = folder / GRM_CONFIG_FILE
        return (file, folder) if file.is_file() else None
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(str(path), GRM_CONFIG_FILE)
    except HFValidationError:  # neither a folder nor a hub id
        return None
    if not isinstance(cached, str):
        return None
    file = Path(cached)
    return file, file.parents[2]  # <cache>/models--org--name/snapshots/<revision>/grm_config.json


def _template(file: Path, root: Path, name: Any) -> str | Path:
    """A ``template`` entry: the path of a file in the config's folder (which must not lead out of ``root``), or a
    built-in template name."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{file}: template must be a file name in the model folder or a built-in template name")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{file}: template {name!r} must be a file inside the model folder or a built-in name")
    candidate = file.parent / relative
    if candidate.is_file():
        if not candidate.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"{file}: template {name!r} links to a file outside the model folder")
        return candidate
    if name in BUILTIN_TEMPLATES:
        return name
    raise ValueError(
        f"{file}: template {name!r} is neither a file in the model folder nor a built-in template "
        f"({', '.join(BUILTIN_TEMPLATES)}); for a hub id, download the whole repository"
    )


def write_grm_config(
    path: str | Path,
    template_source: str,
    *,
    score_range: tuple[int, int],
    max_new_tokens: int,
    judge: str | None = None,
) -> Path:
    """Save a template (its source text) and the prompting settings (and the judge format's name, when not SPCT's
    default) into a model folder."""
    folder = Path(path)
    (folder / TEMPLATE_FILE).write_text(template_source, encoding="utf-8")
    config: dict[str, Any] = {} if judge is None else {"judge": judge}
    config |= {"template": TEMPLATE_FILE, "score_range": list(score_range), "max_new_tokens": max_new_tokens}
    (folder / GRM_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder / GRM_CONFIG_FILE
