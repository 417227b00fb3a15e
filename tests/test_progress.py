"""grm.progress: bars only on a terminal (or with GRM_PROGRESS=1) and only for long work, plain lines where
standard error is not a terminal, logs on lines of their own and once each, and nothing that can raise into the
work being shown."""

import io
import logging
import sys

import pytest

import grm.progress
from grm.progress import ConsoleHandler, enabled, progress_bar, setup_console


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Broken(io.StringIO):
    """Standard error whose reader went away: every write raises, as a closed pipe does."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_the_switch(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delenv("GRM_PROGRESS", raising=False)
    assert not enabled() and not enabled(True)  # not a terminal
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert enabled() and enabled(True) and not enabled(False)
    monkeypatch.setenv("GRM_PROGRESS", "0")
    assert not enabled(True)
    monkeypatch.setenv("GRM_PROGRESS", "1")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert enabled() and not enabled(False)  # an explicit False wins
    monkeypatch.setenv("GRM_PROGRESS", "maybe")
    assert not enabled()  # any other value counts as unset


def test_a_bar_shows_only_for_long_work_and_without_escapes_off_a_terminal(monkeypatch):
    monkeypatch.delenv("GRM_PROGRESS", raising=False)
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    with progress_bar(total=3, desc="quick") as bar:
        bar.update(3)
    assert tty.getvalue() == ""  # done before DELAY_S: nothing drawn
    monkeypatch.setattr(grm.progress, "DELAY_S", 0.0)
    with progress_bar(total=3, desc="long", leave=True) as bar:
        bar.update(3)
    assert "long" in tty.getvalue() and "\r" in tty.getvalue()  # a terminal's bar redraws in place

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setenv("GRM_PROGRESS", "1")
    monkeypatch.setattr(grm.progress, "LOG_INTERVAL_S", 0.0)
    with progress_bar(total=3, desc="logged", leave=True) as bar:
        for _ in range(3):
            bar.update(1)
    text = log.getvalue()
    assert "logged" in text and "3/3" in text
    assert "\r" not in text and "\x1b" not in text and all(line.strip() for line in text.splitlines())


def test_bars_and_logs_never_raise_into_the_work(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Broken())
    monkeypatch.setenv("GRM_PROGRESS", "1")
    monkeypatch.setattr(grm.progress, "DELAY_S", 0.0)
    monkeypatch.setattr(grm.progress, "LOG_INTERVAL_S", 0.0)
    logger = logging.getLogger("grm.test_progress")
    handler = ConsoleHandler()
    logger.addHandler(handler)
    try:
        done = 0
        for _ in progress_bar(range(5), desc="work"):
            logger.warning("a warning while the bar is drawn")
            done += 1
        assert done == 5
    finally:
        logger.removeHandler(handler)
    monkeypatch.setattr(sys, "stderr", None)  # no standard error at all (pythonw, a closed descriptor)
    with progress_bar(total=2, desc="none") as bar:
        bar.update(2)


def test_a_warning_is_written_on_its_own_line_not_glued_to_a_bar(monkeypatch):
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.delenv("GRM_PROGRESS", raising=False)
    monkeypatch.setattr(grm.progress, "DELAY_S", 0.0)
    logger = logging.getLogger("grm.test_progress")
    handler = ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    try:
        with progress_bar(total=4, desc="scoring", leave=True) as bar:
            bar.update(2)
            logger.warning("something to know")
            bar.update(2)
    finally:
        logger.removeHandler(handler)
    pieces = [p for p in tty.getvalue().replace("\r", "\n").split("\n") if p.strip()]
    assert "WARNING grm.test_progress: something to know" in pieces  # a whole line, nothing of the bar on it


@pytest.mark.parametrize("verbose", [False, True])
def test_vllms_triton_note_is_heard_only_verbose(verbose):
    """vLLM (imported by TRL in every trainer) warns on a CPU that its Triton has no CPU backend: noise at the
    default level, kept for -v. (Levels, not captured output: once vLLM is imported its loggers write through a
    handler of its own, which grm adopts only where it runs.)"""
    setup_console(verbose=verbose)
    try:
        assert logging.getLogger("vllm.triton_utils.importing").isEnabledFor(logging.WARNING) is verbose
        assert logging.getLogger("vllm.engine").isEnabledFor(logging.WARNING)  # vLLM's other warnings
        assert logging.getLogger("vllm.engine").isEnabledFor(logging.INFO) is verbose
    finally:
        setup_console(verbose=False)


@pytest.mark.parametrize("library", ["huggingface_hub.utils._http", "datasets.load"])
def test_a_library_warning_is_shown_once(capfd, library):
    """huggingface_hub and datasets attach a console handler of their own to their root logger and still
    propagate, so under a root handler each warning (a hub download retried, say) was printed twice."""
    setup_console(verbose=False)
    root_of_library = logging.getLogger(library.split(".")[0])
    own = logging.StreamHandler()  # as the library attaches at import (it may be imported after grm's setup)
    root_of_library.addHandler(own)
    try:
        capfd.readouterr()
        logging.getLogger(library).warning("Retrying in 1s [Retry 1/5].")
        logging.getLogger(library).warning("Retrying in 2s [Retry 2/5].")
        captured = capfd.readouterr()
        text = captured.out + captured.err
        assert text.count("Retrying in 1s [Retry 1/5].") == 1 and text.count("Retrying in 2s [Retry 2/5].") == 1
        assert f"WARNING {library}: Retrying in 2s" in text  # the later ones in grm's format
    finally:
        root_of_library.removeHandler(own)


def test_loading_a_model_in_a_library_draws_transformers_bar_only_where_grm_draws_its_own(
    memorized_grm_path, capfd, monkeypatch
):
    """``GRM.from_pretrained`` off a terminal (or with progress=False) loads without transformers' "Loading
    weights" bar, and leaves transformers' own setting as it was."""
    from transformers.utils import logging as transformers_logging

    from grm import GRM

    monkeypatch.delenv(grm.progress.ENV, raising=False)
    transformers_logging.enable_progress_bar()
    for kwargs, env in (({}, None), ({"progress": False}, "1")):
        if env is not None:
            monkeypatch.setenv(grm.progress.ENV, env)
        capfd.readouterr()
        GRM.from_pretrained(memorized_grm_path, **kwargs)
        assert "Loading weights" not in capfd.readouterr().err, kwargs
        assert transformers_logging.is_progress_bar_enabled()
    monkeypatch.setenv(grm.progress.ENV, "1")  # asked for: transformers' bar is drawn too
    GRM.from_pretrained(memorized_grm_path)
    assert "Loading weights" in capfd.readouterr().err
