"""The settings a resumable output was written with, recorded beside it, so that a resumed run cannot silently mix
rows made with other settings.

A job that appends to an output and resumes from it (``grm score``'s rows, an evaluation's cache) describes what
changes its results as a flat dict of JSON values (model, template, k, seed, ...) and, before it writes anything,
calls :func:`resolve_settings`:

- a new output (no rows yet) takes the settings given, with a seed of None (unseeded) drawn
  (:func:`grm.seeding.random_seed`), so the run can be repeated;
- an output with rows must have been written with the same settings, else :class:`SettingsMismatch` names each
  setting that differs (then and now) and how to start afresh or write elsewhere; a seed of None means "the
  recorded one", so a resumed unseeded run goes on with the seed it started with;
- an output with rows and no record (written before grm recorded settings, or its record deleted) is refused the
  same way: nothing tells what made its rows.

Then :func:`write_settings` records them in ``<output>.settings.json`` (:func:`settings_path`), a small JSON file
a person can read: ``{"grm_version": ..., "settings": {...}}``. Only ``settings`` is compared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grm import __version__
from grm.seeding import random_seed

SUFFIX = ".settings.json"
"""The record of ``out.jsonl`` is ``out.jsonl.settings.json``."""

DRAWN = ("seed",)
"""Settings whose None means "drawn": drawn for a new output, the recorded value on resume."""


class SettingsMismatch(ValueError):
    """A resumed output was written with other settings (or none recorded). ``differences`` holds
    ``(name, recorded, now)`` for each setting that differs (empty when nothing was recorded)."""

    def __init__(self, message: str, differences: Sequence[tuple[str, Any, Any]] = ()) -> None:
        super().__init__(message)
        self.differences = list(differences)


def settings_path(output: str | Path) -> Path:
    """Where the settings of ``output`` are recorded: ``<output>.settings.json`` beside it."""
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def read_settings(output: str | Path) -> dict[str, Any] | None:
    """The settings recorded for ``output``, or None when there is no record; ValueError naming the file when it
    cannot be read."""
    path = settings_path(output)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path}: not a grm settings file ({e}); delete it together with {output}") from None
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise ValueError(f"{path}: not a grm settings file (no 'settings' object); delete it together with {output}")
    return record["settings"]


def resolve_settings(
    output: str | Path,
    settings: Mapping[str, Any],
    *,
    started: bool,
    restart: str | None = None,
    drawn: Sequence[str] = DRAWN,
) -> dict[str, Any]:
    """The settings a run writing to ``output`` goes on with (``settings`` as JSON values, with its ``drawn`` keys
    filled), or :class:`SettingsMismatch`. ``started``: ``output`` holds rows already (the caller knows how to read
    them). ``restart`` says how to start afresh or write elsewhere (default: delete ``output``, or choose another
    one). Nothing is written: see :func:`write_settings`."""
    now = _plain(dict(settings))
    recorded = read_settings(output) if started else None
    advice = restart or f"delete {output} to start afresh, or write to another output"
    if started and recorded is None:
        raise SettingsMismatch(
            f"{output} holds rows but no record of the settings that produced them ({settings_path(output)}: written "
            f"by an older grm, or deleted), so resuming could mix rows of different settings; {advice}"
        )
    for name in drawn:
        if now.get(name) is None:
            now[name] = recorded[name] if recorded is not None and recorded.get(name) is not None else random_seed()
    if recorded is not None:
        differences = [(k, recorded.get(k), now.get(k)) for k in dict.fromkeys([*recorded, *now])]
        differences = [(k, old, new) for k, old, new in differences if old != new]
        if differences:
            lines = "".join(f"\n  {k}: {json.dumps(old)} then, {json.dumps(new)} now" for k, old, new in differences)
            raise SettingsMismatch(
                f"{output} was written with other settings (recorded in {settings_path(output)}), and resuming "
                f"would mix rows of both:{lines}\n{advice[0].upper()}{advice[1:]}.",
                differences,
            )
    return now


def write_settings(output: str | Path, settings: Mapping[str, Any]) -> None:
    """Record ``settings`` for ``output`` (replacing any record, never leaving half a file)."""
    path = settings_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    record = {"grm_version": __version__, "settings": _plain(dict(settings))}
    partial.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists, paths as strings), so recorded and new compare equal."""
    try:
        return json.loads(json.dumps(value, default=str, allow_nan=False))
    except ValueError:
        raise ValueError(f"settings must be JSON values with finite numbers, got {value!r:.200}") from None
