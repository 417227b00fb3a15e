"""Shared fixtures (test helpers are in helpers.py): a tiny real GRM built locally (no hub)."""

from __future__ import annotations

import pytest

from helpers import MEMORIZED


@pytest.fixture(scope="session")
def memorized_grm_path(tmp_path_factory) -> str:
    """A tiny Qwen2 GRM saved with save_pretrained that judges the MEMORIZED items correctly in any order."""
    from grm.tiny import build_memorized_grm

    path = tmp_path_factory.mktemp("tiny-grm")
    build_memorized_grm(path, MEMORIZED)
    return str(path)
