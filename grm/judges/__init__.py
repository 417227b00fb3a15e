"""Judge formats: the judges grm can run, each a prompt and a reader (see :class:`JudgeFormat`), by name.

``get_judge("prometheus-absolute")`` returns a built-in; :func:`register_judge` adds your own. ``GRM(backend,
judge=NAME)``, ``GRM.from_pretrained(path, judge=NAME)``, ``--judge NAME`` and a model folder's ``grm_config.json``
``"judge"`` key select one; SPCT's own format, ``spct``, is the default. docs/judges.md lists the built-ins with
their sources.
"""

from __future__ import annotations

from grm.judges.format import SHOWS, VERDICTS, JudgeFormat, Reader

__all__ = ["JudgeFormat", "Reader", "VERDICTS", "SHOWS", "get_judge", "register_judge", "judge_names"]

_REGISTRY: dict[str, JudgeFormat] = {}


def register_judge(judge: JudgeFormat, *, replace: bool = False) -> JudgeFormat:
    """Make ``judge`` selectable by its name; ValueError if a format of that name exists (unless ``replace``)."""
    if not isinstance(judge, JudgeFormat):
        raise TypeError(f"register_judge takes a JudgeFormat, got {type(judge).__name__}")
    if judge.name in _REGISTRY and not replace:
        raise ValueError(f"a judge format named {judge.name!r} exists; pass replace=True to replace it")
    _REGISTRY[judge.name] = judge
    return judge


def get_judge(judge: str | JudgeFormat) -> JudgeFormat:
    """The format named ``judge`` (a :class:`JudgeFormat` is returned as is); ValueError listing the known names."""
    if isinstance(judge, JudgeFormat):
        return judge
    if not isinstance(judge, str) or judge not in _REGISTRY:
        raise ValueError(f"unknown judge format {judge!r}; the known ones are {', '.join(judge_names())}")
    return _REGISTRY[judge]


def judge_names() -> list[str]:
    """The names of the registered formats, built-ins first."""
    return list(_REGISTRY)


def _register_builtins() -> None:
    from grm.judges.builtin import BUILTINS

    for judge in BUILTINS:
        register_judge(judge)


_register_builtins()
