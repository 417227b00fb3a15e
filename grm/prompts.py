"""Find and render GRM prompt templates into chat messages.

A template is a jinja2 file. If it defines ``{% block system %}`` that block becomes a system message; the
``{% block user %}`` block (or the whole file, when it has no such block) becomes the user message.
Templates render in a sandboxed environment, and user text (query, conversation, responses, principles,
reference) reaches them only as variables, so ``{{ 7*7 }}`` or ``{% raw %}`` inside a response is printed
verbatim, never run.

User text is escaped on its way in (:func:`escape_user_text`), so that it cannot pass for the prompt's structure:

- Response blocks are delimited by lines such as ``[The Start of Response 2]``. Every line of user text that
  looks like a delimiter (``[The Start of ...]`` or ``[The End of ...]``) gets a leading backslash; see
  :func:`escape_delimiters`. "Looks like" is judged after Unicode normalisation: any line break (``\r``,
  U+2028, U+0085, ``\v``, ``\f``...), fullwidth or look-alike brackets and letters, and invisible characters
  (zero-width, BOM) do not hide a delimiter. Templates of your own should use the same delimiter shape.
- Chat control tokens written as ``<|name|>`` or ``<｜name｜>`` (ChatML's ``<|im_end|>``, Llama 3's
  ``<|eot_id|>``...) get a backslash after their ``<`` (:func:`neutralize_control_tokens`), so that the model's
  tokenizer cannot read them as real turn markers. The transformers and vLLM backends also neutralise every
  special token of the model's own tokenizer (:class:`ControlTokens`).

Everything else in user text is shown unchanged.
"""

from __future__ import annotations

import numbers
import re
import reprlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from jinja2 import StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from grm.types import Message

BUILTIN_TEMPLATES = ("default", "correctness", "synthetic")
_SCORE_RANGE = re.compile(r"\{#-?\s*grm:\s*score_range\s*=\s*(-?\d+)\s*,\s*(-?\d+)\s*-?#\}")
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 2, 60, 60, 4, 4


def brief(value: object) -> str:
    """A short repr of any value for an error message: bounded in length and nesting, whatever the value."""
    return _REPR.repr(value)


class TemplateError(ValueError):
    """A template could not be found or rendered."""


# -- delimiters: decided on a "skeleton" of each line, so that look-alikes and invisible characters do not hide one

_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits at
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164"
    "\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_BRACKETS = "[\uff3b\ufe47\u2045\u2772\u3010\u3014\u3016\u3018\u301a\u27e6\u298b\u298d\u298f\u2308\u230a\u23a1\u23a3"
_BACKSLASHES = "\\\uff3c\ufe68\u2216\u29f5\u29f9"
# A line (after any line break) whose first visible character could be a bracket or a backslash, long enough to
# hold the shortest delimiter start, "[the end of" (11 characters).
_LEADING_BLANKS = rf"(?:[^\S{_LINE_BREAKS}]|[{_INVISIBLE}])*+"
_CANDIDATE = re.compile(
    rf"(?:\A|(?<=[{_LINE_BREAKS}])){_LEADING_BLANKS}(?=[{re.escape(_BRACKETS + _BACKSLASHES)}][^{_LINE_BREAKS}]{{10}})"
)
_LINE_END = re.compile(f"[{_LINE_BREAKS}]")
_DROP = re.compile(f"[{_INVISIBLE}\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")  # and accents
_LOOKALIKES = {
    "a": "\u0430\u0410\u03b1\u0391\u0251\u1d00\u13aa\uab7a",
    "d": "\u0501\u0500\u13a0\uab70\u1d05",
    "e": "\u0435\u0415\u0395\u1d07\u13ac\uab7c\u04bd\u212e",
    "f": "\u0192\ua730\u03dc",
    "h": "\u04bb\u04ba\u041d\u043d\u0397\u029c\u13bb\uab8b\u0570",
    "n": "\u0578\u043f\u0274\u039d\u03b7",
    "o": "\u043e\u041e\u03bf\u039f\u0585\u0555\u1d0f",
    "r": "\u0433\u0280\u13a1\uab71",
    "s": "\u0455\u0405\ua731\u13da\uabaa",
    "t": "\u0442\u0422\u03c4\u03a4\u1d1b\u13a2\uab72",
    "[": _BRACKETS[1:],
    "\\": _BACKSLASHES[1:],
}
_SKELETON = str.maketrans({c: ascii_char for ascii_char, chars in _LOOKALIKES.items() for c in chars})
_DELIMITER = re.compile(r"\\*\[\s*the\s+(?:start|end)\s+of\b")


def _skeleton(text: str) -> str:
    """``text`` as it reads: compatibility forms unfolded, accents and invisible characters dropped, look-alike
    letters and brackets mapped to ASCII, lower case."""
    return _DROP.sub("", unicodedata.normalize("NFKD", text)).translate(_SKELETON).lower()


def escape_delimiters(text: str) -> str:
    """Prefix every delimiter-looking line (``[The End of Response 1]``...) with one more backslash.

    A line is any text after a line break of any kind; it looks like a delimiter when, once leading spaces and
    invisible characters are skipped and look-alikes are mapped to ASCII (:func:`_skeleton`), it reads
    ``[the start of`` or ``[the end of`` after any number of backslashes. Adding a backslash even to lines that
    already start with some keeps the mapping one-to-one, so no input can produce a bare delimiter line.
    """
    out, done = [], 0
    for m in _CANDIDATE.finditer(text):
        start = m.end()
        end = _LINE_END.search(text, start)
        line = text[start : end.start() if end else len(text)]
        if _DELIMITER.match(_skeleton(line)):
            out += [text[done:start], "\\"]
            done = start
    return "".join(out) + text[done:] if out else text


_CONTROL_TOKEN = re.compile(r"<(?=\|[^<>|\s]{1,64}\|>|\uff5c[^<>\uff5c\s]{1,64}\uff5c>)")


def neutralize_control_tokens(text: str) -> str:
    """Put a backslash after the ``<`` of every ``<|name|>`` / ``<｜name｜>`` chat control token in ``text``
    (``<|im_end|>`` -> ``<\\|im_end|>``), the form most chat templates' turn markers take."""
    return _CONTROL_TOKEN.sub("<\\\\", text)


def escape_user_text(text: str) -> str:
    """User text made safe to place in a prompt: control tokens neutralised, delimiter lines escaped."""
    return escape_delimiters(neutralize_control_tokens(text))


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching the longest of ``words`` at a position, written as a trie (``ab``, ``ac`` -> ``a(?:b|c)``):
    the work per position is bounded by the length of a word, not by how many words there are."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def pattern(node: dict[str, dict]) -> str:
        branches = [re.escape(ch) + pattern(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        return f"(?:{body})?" if "" in node else body

    return pattern(trie)


class ControlTokens:
    """Neutralises the special tokens of one tokenizer (``<|im_start|>``, ``</s>``, ``[INST]``...) in text, by a
    backslash after their first character, so that text from users can never be tokenized into them."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.tokens = sorted({t for t in tokens if isinstance(t, str) and len(t) >= 2}, key=len, reverse=True)
        self._pattern = re.compile(_trie_pattern(self.tokens)) if self.tokens else None

    @classmethod
    def of(cls, tokenizer: object) -> ControlTokens:
        """The special tokens of a Hugging Face tokenizer: ``all_special_tokens`` and every added token marked
        special."""
        tokens = set(getattr(tokenizer, "all_special_tokens", None) or ())
        for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
            if getattr(added, "special", False):
                tokens.add(str(getattr(added, "content", added)))
        return cls(tokens)

    def escape(self, text: str) -> str:
        """``text`` with none of the tokens left in it (a token holding a backslash may take a few passes)."""
        if self._pattern is None:
            return text
        for _ in range(4):
            if not self._pattern.search(text):
                return text
            text = self._pattern.sub(lambda m: m.group()[0] + "\\" + m.group()[1:], text)
        return self._pattern.sub("", text)

    def messages(self, messages: Sequence[Message]) -> list[Message]:
        """Chat messages with the tokens neutralised in every content."""
        return [{**m, "content": self.escape(m["content"])} for m in messages]


def normalize_query(query: str | Sequence[Message]) -> list[Message]:
    """Turn a query (a string, or chat messages ending with a user turn) into a validated message list."""
    if isinstance(query, str):
        return [{"role": "user", "content": query}]
    if not isinstance(query, Sequence) or not query:
        raise TypeError(f"query must be a string or a non-empty list of chat messages, got {brief(query)}")
    messages: list[Message] = []
    for i, m in enumerate(query):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or "role" not in m:
            raise TypeError(f"query message {i} must be a dict with 'role' and string 'content', got {brief(m)}")
        if not isinstance(m["role"], str) or m["role"] not in ("system", "user", "assistant"):
            raise ValueError(f"query message {i} has role {brief(m['role'])}; expected system, user or assistant")
        messages.append({"role": m["role"], "content": m["content"]})
    if messages[-1]["role"] != "user":
        raise ValueError(f"the last query message must be a user turn, got role {messages[-1]['role']!r}")
    return messages


def normalize_responses(responses: Sequence[str]) -> list[str]:
    """Validate a list of response strings."""
    if isinstance(responses, str) or not isinstance(responses, Sequence):
        raise TypeError(f"responses must be a list of strings, got {type(responses).__name__}")
    if not responses:
        raise ValueError("responses is empty; give at least one response to score")
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise TypeError(f"response {i} must be a string, got {type(r).__name__}")
    return list(responses)


def normalize_principles(principles: str | Sequence[str] | None) -> list[str] | None:
    """Principles to judge by, as a list of strings (a single string is one principle); None for none."""
    if principles is None:
        return None
    if isinstance(principles, str):
        return [principles] if principles else None
    if not isinstance(principles, list | tuple):
        raise TypeError(f"principles must be a string or a list of strings, got {type(principles).__name__}")
    for i, p in enumerate(principles):
        if not isinstance(p, str):
            raise TypeError(f"principle {i} must be a string, got {type(p).__name__}")
    return list(principles) or None


def normalize_reference(reference: str | None) -> str | None:
    """A reference answer: a string or None."""
    if reference is not None and not isinstance(reference, str):
        raise TypeError(f"reference must be a string, got {type(reference).__name__}")
    return reference


def normalize_score_range(score_range: Sequence[int]) -> tuple[int, int]:
    """A score range as ``(low, high)``: two integers with low <= high; ValueError naming what is wrong."""
    if (
        isinstance(score_range, str | bytes)
        or not isinstance(score_range, Sequence)
        or len(score_range) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in score_range)
    ):
        raise ValueError(f"score_range must be two integers [low, high], got {brief(score_range)}")
    low, high = int(score_range[0]), int(score_range[1])
    if low > high:
        raise ValueError(f"score_range must be [low, high] with low <= high, got [{low}, {high}]")
    return low, high


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded jinja2 template that renders (query, responses, ...) to chat messages."""

    name: str
    source: str

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
