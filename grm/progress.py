"""Progress bars and console logs that stay out of the way, built once for every part of grm.

- A bar is shown only on a terminal (or in a notebook), and only once its work has lasted :data:`DELAY_S`
  seconds: a library call that takes a moment draws nothing. ``progress=False`` (the argument of every grm
  function and class that draws one) turns a bar off; the environment variable ``GRM_PROGRESS`` turns every bar
  off (``0``) or on even where standard error is not a terminal (``1``: then each update is a plain line, at most
  one per :data:`LOG_INTERVAL_S`, without ``\\r`` or cursor escapes, for log files).
- Bars and :class:`ConsoleHandler` write through :data:`STDERR`, which never raises: a closed or broken standard
  error (``grm score ... 2>&1 | head``) cannot fail the work being shown.
- :class:`ConsoleHandler` writes each log record on a line of its own above any bar, and claims the records of
  libraries that print their own copy (``huggingface_hub``, ``datasets``, ``transformers``), so each is shown once.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import std

ENV = "GRM_PROGRESS"
"""``0`` turns every progress bar off, ``1`` shows them even where standard error is not a terminal."""

DELAY_S = 2.0
"""A bar appears only once its work has taken this long."""

LOG_INTERVAL_S = 30.0
"""Where standard error is not a terminal (``GRM_PROGRESS=1``), a bar writes a line at most this often."""

LIBRARY_LOGGERS = ("huggingface_hub", "datasets", "transformers")
"""Libraries that attach a console handler of their own (and so print a record twice under a root handler)."""

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_OFF, _ON = ("0", "false", "no", "off"), ("1", "true", "yes", "on")


class _Stderr:
    """The process's standard error as it is at each write (a replaced ``sys.stderr`` is followed), never raising:
    a write to a closed or broken stream is dropped. Where it is not a terminal, carriage returns and cursor
    escapes (a bar redrawing itself) become plain lines."""

    def write(self, text: str) -> None:
        stream = sys.stderr
        if stream is None:
            return
        if not self.isatty():
            text = "".join(f"{line.rstrip()}\n" for line in re.split(r"[\r\n]", _ESCAPES.sub("", text)) if line.strip())
        try:
            stream.write(text)
        except (OSError, ValueError):  # a broken pipe, a closed file
            pass

    def flush(self) -> None:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        try:
            return sys.stderr is not None and sys.stderr.isatty()
        except (OSError, ValueError):
            return False


STDERR = _Stderr()
"""Standard error for bars and logs: never raises (see :class:`_Stderr`)."""


def enabled(progress: bool | None = None) -> bool:
    """Whether a bar is shown: never with ``progress=False`` or ``GRM_PROGRESS=0``; always with ``GRM_PROGRESS=1``;
    else on a terminal or in a notebook. Any other value of ``GRM_PROGRESS`` counts as unset."""
    if progress is False:
        return False
    env = os.environ.get(ENV, "").strip().lower()
    if env in _OFF:
        return False
    return env in _ON or STDERR.isatty() or _notebook()


def _notebook() -> bool:
    """Whether tqdm draws widgets here (a Jupyter kernel with ipywidgets)."""
    if "ipykernel" not in sys.modules:
        return False
    from tqdm import auto

    return any(c.__name__ == "tqdm_notebook" for c in auto.tqdm.__mro__)


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    unit: str = "it",
    total: int | None = None,
    initial: int = 0,
    progress: bool | None = None,
    leave: bool = False,
) -> std.tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand) shown as :func:`enabled` says, after :data:`DELAY_S`
    seconds. ``leave``: keep the finished bar on screen (a command's own bar), else it vanishes (work inside)."""
    on = enabled(progress)
    if on and _notebook():
        from tqdm import auto

        return auto.tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial, leave=leave, delay=DELAY_S)
    tty = STDERR.isatty()
    return std.tqdm(
        iterable,
        desc=desc,
        unit=unit,
        total=total,
        initial=initial,
        leave=leave,
        disable=not on,
        file=STDERR,
        delay=DELAY_S,
        mininterval=0.1 if tty else LOG_INTERVAL_S,
        dynamic_ncols=tty,
    )


class ConsoleHandler(logging.Handler):
    """Log records to standard error (:data:`STDERR`: never raising), each on a line of its own above any progress
    bar. A record that a library's own console handler has printed already (they attach one and still let records
    reach the root logger) is not printed again: that handler is removed, so the library's later records come here
    only, once each."""

    def emit(self, record: logging.LogRecord) -> None:
        if self._printed_by_library(record):
            return
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        std.tqdm.write(message, file=STDERR)

    @staticmethod
    def _printed_by_library(record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        printed = False
        while logger is not None and logger is not logging.root:
            library = logger.name.split(".")[0] in LIBRARY_LOGGERS
            for handler in [h for h in logger.handlers if library and _library_console(h)]:
                logger.removeHandler(handler)
                printed = printed or record.levelno >= handler.level
            logger = logger.parent if logger.propagate else None
        return printed


def _library_console(handler: logging.Handler) -> bool:
    """A plain console handler, as the libraries attach to their own loggers (a file handler is a subclass)."""
    return type(handler) is logging.StreamHandler


def adopt_library_logs() -> None:
    """Route the logs of :data:`LIBRARY_LOGGERS` already imported through the root logger's handlers, once each:
    their own console handlers are removed, and ``transformers`` (which does not propagate by default) propagates."""
    for name in LIBRARY_LOGGERS:
        if name not in sys.modules:
            continue
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if _library_console(h)]:
            logger.removeHandler(handler)
        logger.propagate = True


def quiet_library_bars() -> None:
    """Turn off the progress bars of the Hugging Face libraries (loading weights, downloads), as grm's are off
    where :func:`enabled` says so: those imported already, and through ``HF_HUB_DISABLE_PROGRESS_BARS`` (unless
    set) those imported later and child processes."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


@contextmanager
def loading_bars(progress: bool | None = None) -> Iterator[None]:
    """Within it, transformers' own bars (loading weights) show only where :func:`enabled` says grm's do; the
    setting before is restored after, so a library call changes nothing global."""
    from transformers.utils import logging as transformers_logging

    was = transformers_logging.is_progress_bar_enabled()
    if was and not enabled(progress):
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            transformers_logging.enable_progress_bar()


QUIET_LOGGERS = {
    **dict.fromkeys(
        ("httpx", "httpcore", "urllib3", "huggingface_hub", "datasets", "fsspec", "filelock", "vllm"), logging.WARNING
    ),
    "vllm.triton_utils": logging.ERROR,
}
"""Library loggers and the lowest level heard from each without ``-v`` (with it, everything): WARNING for those that
log each request, file or engine step at INFO; ERROR for warnings about the machine that change nothing grm does
(vLLM, imported by TRL, warns on every CPU that its Triton has no CPU backend)."""


def setup_console(verbose: bool = False) -> None:
    """grm's console, for every entry point (``grm`` and ``python -m grm.training....``): each record on a line of
    its own (above any progress bar), never raising, once each; the libraries' per-request lines only when
    ``verbose``."""
    handler = ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else level)
    import huggingface_hub.utils.logging  # noqa: F401  (cheap; its handler goes now, so hub retries show once)

    adopt_library_logs()
    if not enabled():
        quiet_library_bars()
