"""Find and render GRM prompt templates into chat messages.

A template is a jinja2 file. If it defines ``{% block system %}`` that block becomes a system message; the
``{% block user %}`` block (or the whole file, when it has no such block) becomes the user message.
Templates render in a sandboxed environment, and user text (query, conversation, responses, principles,
reference) reaches them only as variables, escaped on the way in (:func:`grm.escaping.escape_user_text`), so
``{{ 7*7 }}`` or ``{% raw %}`` inside a response is printed verbatim, never run, and a forged delimiter line or
control token cannot pass for the prompt's structure.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateNotFound, nodes
from jinja2.sandbox import SandboxedEnvironment

from grm.escaping import DELIMITERS, ControlTokens, escape_user_text
from grm.types import (
    Message,
    normalize_principles,
    normalize_query,
    normalize_reference,
    normalize_responses,
    normalize_score_range,
)

BUILTIN_TEMPLATES = tuple(
    sorted(f.name.removesuffix(".j2") for f in resources.files("grm.templates").iterdir() if f.name.endswith(".j2"))
)
"""The templates shipped in grm (``prompts/``, installed as ``grm.templates``), by name."""
_SCORE_RANGE = re.compile(r"\{#-?\s*grm:\s*score_range\s*=\s*(-?\d+)\s*,\s*(-?\d+)\s*-?#\}")


class TemplateError(ValueError):
    """A template could not be found or rendered."""


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded jinja2 template that renders (query, responses, ...) to chat messages."""

    name: str
    source: str

    @property
    def declares_score_range(self) -> bool:
        """Whether the template declares its score range (``{# grm: score_range=LO,HI #}``)."""
        return _SCORE_RANGE.search(self.source) is not None

    @property
    def score_range(self) -> tuple[int, int]:
        """The score range the template declares with ``{# grm: score_range=LO,HI #}`` (default 1..10)."""
        m = _SCORE_RANGE.search(self.source)
        try:
            return normalize_score_range((int(m.group(1)), int(m.group(2)))) if m else (1, 10)
        except ValueError as e:
            raise TemplateError(f"template {self.name!r} declares a bad score range: {e}") from e

    @classmethod
    def load(cls, name_or_path: str | Path) -> PromptTemplate:
        """Load a built-in template by name (``default``, ``correctness``) or a ``.j2`` file by path."""
        path = Path(name_or_path)
        if isinstance(name_or_path, str) and name_or_path in BUILTIN_TEMPLATES:
            source = resources.files("grm.templates").joinpath(f"{name_or_path}.j2").read_text("utf-8")
            return cls(name_or_path, source)
        if path.is_file():
            return cls(str(path), path.read_text("utf-8"))
        raise TemplateError(
            f"no template {str(name_or_path)!r}: not a built-in ({', '.join(BUILTIN_TEMPLATES)}) nor a file"
        )

    def render(
        self,
        query: str | Sequence[Message],
        responses: Sequence[str],
        *,
        score_range: tuple[int, int] = (1, 10),
        principles: str | Sequence[str] | None = None,
        reference: str | None = None,
        hint: int | None = None,
        delimiters: Sequence[str] = DELIMITERS,
        protect: ControlTokens | None = None,
    ) -> list[Message]:
        """Render to chat messages.

        ``hint`` (for hinted sampling) is, with n >= 2 responses, the 0-based index of the best response in
        the order given (shown 1-based); with one response, its ground-truth score. User text is escaped on the way
        in: ``delimiters`` (a judge format's, see :func:`grm.escaping.escape_delimiters`) and the tokens in
        ``protect`` (a tokenizer's added tokens that the template itself uses, so that user text can never be
        tokenized into the template's own token ids). Rendering is bounded: :data:`MAX_ITERATIONS` loop steps,
        :data:`MAX_SIZE` for a repeated or padded value and :data:`MAX_OUTPUT` characters of output, so that a
        template from an untrusted model folder cannot exhaust time or memory (TemplateError instead).
        """
        messages = normalize_query(query)
        responses = normalize_responses(responses)
        principles, reference = normalize_principles(principles), normalize_reference(reference)
        if hint is not None:
            if len(responses) > 1 and not 0 <= hint < len(responses):
                raise ValueError(f"hint must index one of the {len(responses)} responses, got {hint}")
            if len(responses) == 1 and not score_range[0] <= hint <= score_range[1]:
                raise ValueError(f"hint for one response must be a score in {score_range}, got {hint}")

        def escape(text: str) -> str:
            escaped = escape_user_text(text, delimiters)
            return escaped if protect is None else protect.escape(escaped)

        shown = [escape(r) for r in responses]
        context = {
            "system": [escape(m["content"]) for m in messages if m["role"] == "system"],
            "conversation": [
                {"role": m["role"], "content": escape(m["content"])} for m in messages[:-1] if m["role"] != "system"
            ],
            "query": escape(messages[-1]["content"]),
            "responses": shown,
            "masked": {f"model-{i}": r for i, r in enumerate(shown, 1)},
            "n": len(responses),
            "principles": [escape(p) for p in principles] if principles else None,
            "reference": escape(reference) if reference is not None else None,
            "hint": None if hint is None else hint + 1 if len(responses) > 1 else hint,
            "score_min": score_range[0],
            "score_max": score_range[1],
        }
        template = _compile(self.source, self.name)
        strip = _strip(self.source)
        token = _BUDGET.set(_Budget())
        try:
            if "user" in template.blocks:
                ctx = template.new_context(context)
                out: list[Message] = []
                if "system" in template.blocks:
                    system = strip(_bounded(template.blocks["system"](ctx)))
                    if system:
                        out.append({"role": "system", "content": system})
                out.append({"role": "user", "content": strip(_bounded(template.blocks["user"](ctx)))})
                return out
            return [{"role": "user", "content": strip(_bounded(template.generate(context)))}]
        except TemplateError as e:  # a bound was passed
            raise TemplateError(f"template {self.name!r}: {e}") from e
        except Exception as e:  # jinja errors carry the template line; name the template too
            raise TemplateError(f"template {self.name!r} failed to render: {type(e).__name__}: {e}") from e
        finally:
            _BUDGET.reset(token)


MAX_ITERATIONS = 1_000_000
"""Loop steps one rendering may take, all ``{% for %}`` loops together (over a range, a string, a list...)."""
MAX_SIZE = 1_000_000
"""The largest size a rendering may ask for: a repeated string or list, a width to pad to, a power."""
MAX_OUTPUT = 16_000_000
"""Characters one rendering may produce."""


class _Budget:
    """What one rendering has left to spend (see :data:`MAX_ITERATIONS`)."""

    def __init__(self) -> None:
        self.iterations = MAX_ITERATIONS


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("grm_template_budget")


def _over(what: str, limit: int) -> TemplateError:
    return TemplateError(f"template rendering stopped: {what} over the limit of {limit:,}")


def _bounded(chunks: Iterable[str]) -> str:
    """Join rendered chunks, stopping past :data:`MAX_OUTPUT` characters."""
    out, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise _over("output", MAX_OUTPUT)
        out.append(chunk)
    return "".join(out)


def _counted(iterable: Any) -> Iterator[Any]:
    """What every ``{% for %}`` of a template iterates through: each step counted against the rendering's budget."""
    budget = _BUDGET.get()
    for value in iterable:
        budget.iterations -= 1
        if budget.iterations < 0:
            raise _over("loop steps", MAX_ITERATIONS)
        yield value


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 1


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, with sizes bounded: a repetition (``'a' * n``), a power and any integer argument of a call
    (``'x'.center(n)``) or of a sizing filter (``center``, ``indent``, ``wordwrap``, ``truncate``, ``batch``,
    ``slice``) over :data:`MAX_SIZE`, and loops past :data:`MAX_ITERATIONS` steps in all, are errors."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            count = right if isinstance(left, str | bytes | list | tuple) else left
            if isinstance(count, int) and _size(left if count is right else right) * count > MAX_SIZE:
                raise _over("a repeated value", MAX_SIZE)
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64 and abs(left) > 1:
            raise _over("a power", MAX_SIZE)
        return super().call_binop(context, operator, left, right)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_sizes(args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def _check_sizes(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SIZE:
            raise _over("a size argument", MAX_SIZE)


def _sized_filter(name: str) -> Callable[..., Any]:
    original = _ENV.filters[name]

    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_sizes(args[1:], kwargs)
        return original(*args, **kwargs)

    return checked


def _json(value: Any) -> str:
    """The ``json`` filter: ``json.dumps`` with non-ASCII characters kept (RewardAnything's input)."""
    return json.dumps(value, ensure_ascii=False)


_COUNTED = "__grm_counted"
"""The name under which templates see :func:`_counted` (not a name a template would use)."""
_ENV = _BoundedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
_ENV.globals[_COUNTED] = _counted
for _name in ("center", "indent", "wordwrap", "truncate", "batch", "slice"):
    _ENV.filters[_name] = _sized_filter(_name)
_ENV.filters["json"] = _json
_COMPILED: dict[str, object] = {}
_STRIP = re.compile(r"\{#-?\s*grm:\s*strip\s*=\s*(\w+)\s*-?#\}")


def _strip(source: str) -> Callable[[str], str]:
    """How a rendered message is trimmed: ``{# grm: strip=all #}`` (the default: blanks at both ends),
    ``newlines`` (only line breaks, for prompts that end with a space the judge was trained on) or ``none``."""
    m = _STRIP.search(source)
    mode = m.group(1) if m else "all"
    if mode == "all":
        return str.strip
    if mode == "newlines":
        return lambda text: text.strip("\n")
    if mode == "none":
        return lambda text: text
    raise TemplateError(f"unknown strip mode {mode!r}; expected all, newlines or none")


def _compile(source: str, name: str):
    if source not in _COMPILED:
        try:
            tree = _ENV.parse(source)
            for loop in tree.find_all(nodes.For):  # every loop's steps counted (see _counted)
                if loop.recursive:  # its inner calls, loop(...), would iterate uncounted
                    raise TemplateError(f"template {name!r}: recursive loops are not supported (line {loop.lineno})")
                loop.iter = nodes.Call(nodes.Name(_COUNTED, "load"), [loop.iter], [], None, None, lineno=loop.lineno)
            _COMPILED[source] = _ENV.from_string(tree)
        except TemplateError:
            raise
        except TemplateNotFound as e:
            raise TemplateError(f"template {name!r} refers to a missing template: {e}") from e
        except Exception as e:
            raise TemplateError(f"template {name!r} does not compile: {e}") from e
    return _COMPILED[source]
