"""The optional extras (pyproject.toml's optional dependencies): which extra installs each optional module, and the
one line that names it when the module is missing.

A module of grm that needs an extra imports it as ``grm.distributed`` and ``grm.server`` do::

    try:
        import ray
    except ModuleNotFoundError as e:
        raise_missing_extra(e, "grm.distributed")

so that importing it without the extra fails with one line naming the ``pip install`` to run, and the ``grm``
command (which catches it, :func:`missing_extra`) prints that line alone.
"""

from __future__ import annotations

from typing import NoReturn

EXTRAS = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "starlette": "serve",
    "trl": "train",
    "peft": "train",
    "accelerate": "train",
    "yaml": "train",
    "ray": "ray",
    "vllm": "vllm",
    "math_verify": "search",
    "matplotlib": "eval",
}
"""The extra that installs each optional module."""


def missing_extra(error: ImportError, what: str = "this") -> str | None:
    """The one line to show for a module that an extra installs and that is missing (``what`` needs it), else
    None."""
    module = (error.name or "").split(".")[0]
    if not isinstance(error, ModuleNotFoundError) or module not in EXTRAS:
        return None
    extra = EXTRAS[module]
    return f'{what} needs {module}, from the "{extra}" extra: pip install "grm[{extra}]"'


def raise_missing_extra(error: ModuleNotFoundError, what: str) -> NoReturn:
    """Raise ``error`` again as a ModuleNotFoundError whose message is :func:`missing_extra`'s line (its ``name``
    kept); ``error`` itself when no extra installs the missing module."""
    line = missing_extra(error, what)
    if line is None:
        raise error
    raise ModuleNotFoundError(line, name=error.name) from error
