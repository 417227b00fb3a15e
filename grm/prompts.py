"""Find and render GRM prompt templates into chat messages.

A template is a jinja2 file. If it defines ``{% block system %}`` that block becomes a system message; the
``{% block user %}`` block (or the whole file, when it has no such block) becomes the user message.
Templates render in a sandboxed environment, and user text (query, conversation, responses, principles,
reference) reaches them only as variables, escaped on the way in (:func:`grm.escaping.escape_user_text`), so
``{{ 7*7 }}`` or ``{% raw %}`` inside a response is printed verbatim, never run, and a forged delimiter line or
control token cannot pass for the prompt's structure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from jinja2 import StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from grm.escaping import escape_user_text
from grm.types import (
    Message,
    normalize_principles,
    normalize_query,
    normalize_reference,
    normalize_responses,
    normalize_score_range,
)

BUILTIN_TEMPLATES = ("default", "correctness", "synthetic")
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
    ) -> list[Message]:
        """Render to chat messages.

        ``hint`` (for hinted sampling) is, with n >= 2 responses, the 0-based index of the best response in
        the order given (shown 1-based); with one response, its ground-truth score.
        """
        messages = normalize_query(query)
        responses = normalize_responses(responses)
        principles, reference = normalize_principles(principles), normalize_reference(reference)
        if hint is not None:
            if len(responses) > 1 and not 0 <= hint < len(responses):
                raise ValueError(f"hint must index one of the {len(responses)} responses, got {hint}")
            if len(responses) == 1 and not score_range[0] <= hint <= score_range[1]:
                raise ValueError(f"hint for one response must be a score in {score_range}, got {hint}")
        context = {
            "system": [escape_user_text(m["content"]) for m in messages if m["role"] == "system"],
            "conversation": [
                {"role": m["role"], "content": escape_user_text(m["content"])}
                for m in messages[:-1]
                if m["role"] != "system"
            ],
            "query": escape_user_text(messages[-1]["content"]),
            "responses": [escape_user_text(r) for r in responses],
            "n": len(responses),
            "principles": [escape_user_text(p) for p in principles] if principles else None,
            "reference": escape_user_text(reference) if reference is not None else None,
            "hint": None if hint is None else hint + 1 if len(responses) > 1 else hint,
            "score_min": score_range[0],
            "score_max": score_range[1],
        }
        template = _compile(self.source, self.name)
        try:
            if "user" in template.blocks:
                ctx = template.new_context(context)
                out: list[Message] = []
                if "system" in template.blocks:
                    system = "".join(template.blocks["system"](ctx)).strip()
                    if system:
                        out.append({"role": "system", "content": system})
                out.append({"role": "user", "content": "".join(template.blocks["user"](ctx)).strip()})
                return out
            return [{"role": "user", "content": template.render(context).strip()}]
        except Exception as e:  # jinja errors carry the template line; name the template too
            raise TemplateError(f"template {self.name!r} failed to render: {e}") from e


_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
_COMPILED: dict[str, object] = {}


def _compile(source: str, name: str):
    if source not in _COMPILED:
        try:
            _COMPILED[source] = _ENV.from_string(source)
        except TemplateNotFound as e:
            raise TemplateError(f"template {name!r} refers to a missing template: {e}") from e
        except Exception as e:
            raise TemplateError(f"template {name!r} does not compile: {e}") from e
    return _COMPILED[source]
