"""Escaping user text so that it cannot pass for a prompt's structure or a chat template's control tokens.

- Response blocks are delimited by lines such as ``[The Start of Response 2]`` (or ``[The Begin of ...]``, and
  each judge format's own section headers and verdict markers). Every part of user text that looks like one gets a
  backslash in front; see :func:`escape_delimiters`. "Looks like" is judged on a skeleton of the text
  (:func:`skeleton`): fullwidth forms, look-alike letters and brackets, and every invisible, control, combining or
  spacing character (by Unicode category) do not hide a delimiter, wherever in a line it stands.
- Chat control tokens written as ``<|name|>`` or ``<｜name｜>`` (ChatML's ``<|im_end|>``, Llama 3's
  ``<|eot_id|>``...) get a backslash after their ``<`` (:func:`neutralize_control_tokens`), so that the model's
  tokenizer cannot read them as real turn markers. The transformers and vLLM backends also neutralise every
  special token of the model's own tokenizer (:class:`ControlTokens`).

Everything else in user text is shown unchanged. This module knows text only: nothing of templates or engines.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence

from grm.types import Message

# -- delimiters: found in a "skeleton" of the text, so that look-alikes and invisible characters do not hide one

_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits at
_BLANK_GLYPHS = "\u115f\u1160\u2800\u3164\uffa0"
"""Letters and symbols drawn as nothing (Hangul fillers, the braille blank): the only blanks no category marks."""
_LOOKALIKES = {
    "a": "\u0430\u0410\u03b1\u0391\u0251\u1d00\u13aa\uab7a",
    "d": "\u0501\u0500\u13a0\uab70\u1d05",
    "e": "\u0435\u0415\u0395\u1d07\u13ac\uab7c\u04bd\u212e",
    "f": "\u0192\ua730\u03dc",
    "g": "\u0261\u0262\u050c\u050d",
    "h": "\u04bb\u04ba\u041d\u043d\u0397\u029c\u13bb\uab8b\u0570",
    "i": "\u0456\u0406\u03b9\u0399\u026a\u04cf\u04c0",
    "n": "\u0578\u043f\u0274\u039d\u03b7",
    "o": "\u043e\u041e\u03bf\u039f\u0585\u0555\u1d0f",
    "r": "\u0433\u0280\u13a1\uab71",
    "s": "\u0455\u0405\ua731\u13da\uabaa",
    "t": "\u0442\u0422\u03c4\u03a4\u1d1b\u13a2\uab72",
    "[": "\uff3b\ufe47\u2045\u2772\u3010\u3014\u3016\u3018\u301a\u27e6\u298b\u298d\u298f\u2308\u230a\u23a1\u23a3",
    "\\": "\uff3c\ufe68\u2216\u29f5\u29f9",
    "<": "\u2039\u3008\u27e8\u276e\u02c2\u1438\u2329",
    "#": "\u266f\u2317",
}
_TO_ASCII = {c: ascii_char for ascii_char, chars in _LOOKALIKES.items() for c in chars}
DELIMITERS = (r"\[the(?:start|begin|end)of",)
"""What a delimiter looks like in the skeleton of user text (:func:`skeleton`: lower case, blanks dropped): the
``[The Start of ...]`` / ``[The Begin of ...]`` / ``[The End of ...]`` lines of grm's and DeepSeek-GRM's
templates. A judge format adds its own (its section headers, its verdict markers)."""


def _fold(char: str) -> str:
    """One character as :func:`skeleton` reads it."""
    if char in _LINE_BREAKS:
        return "\n"
    category = unicodedata.category(char)
    if category[0] in "CMZ" and category != "Cn" or char in _BLANK_GLYPHS:  # controls, formats, marks, spaces
        return ""
    if char in _TO_ASCII:
        return _TO_ASCII[char]
    unfolded = unicodedata.normalize("NFKD", char)
    return char if unfolded == char else "".join(map(_fold, unfolded))


class _Folds(dict):
    """``str.translate``'s table for :func:`skeleton`, filled as characters are met (a cached lookup runs in C)."""

    def __missing__(self, code: int) -> str:
        folded = self[code] = _fold(chr(code))
        return folded


_FOLDS = _Folds()
_PIECE = 1 << 16


def skeleton(text: str) -> str:
    """``text`` as it reads: compatibility forms unfolded (fullwidth, math letters), look-alike letters, brackets
    and symbols mapped to ASCII, and dropped: every control, format, combining, space and separator character (by
    Unicode category, not from a list) and the few letters drawn as nothing; line breaks of any kind become
    ``\\n``. Lower case is left to the patterns (matched ignoring case)."""
    # in pieces: one translate holds the GIL for its whole text (0.3 s for 4 MB), stalling a server's other threads
    return "".join(text[i : i + _PIECE].translate(_FOLDS) for i in range(0, len(text), _PIECE))


@functools.cache
def _delimiter_pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.I)


def escape_delimiters(text: str, patterns: Sequence[str] = DELIMITERS) -> str:
    """Put a backslash before every delimiter-looking part of ``text`` (``[The End of Response 1]``...).

    A part looks like a delimiter when its :func:`skeleton` matches one of ``patterns`` (regular expressions over
    the skeleton; default :data:`DELIMITERS`), wherever it stands in a line: no leading character, visible or not,
    can hide one. Escaping even parts already preceded by backslashes keeps the mapping one-to-one, so no input
    can produce a bare delimiter. Time is linear in the length of the text.
    """
    folded = skeleton(text)
    matches = list(_delimiter_pattern(tuple(patterns)).finditer(folded))
    if not matches:
        return text
    out, done, position, reached = [], 0, 0, 0  # position in text, reached: its place in the skeleton
    for m in matches:
        while True:  # on to the character whose skeleton starts the match (past invisible ones)
            width = len(_FOLDS[ord(text[position])])
            if width and reached + width > m.start():
                break
            reached += width
            position += 1
        out += [text[done:position], "\\"]
        done = position
    return "".join(out) + text[done:]


_CONTROL_TOKEN = re.compile(r"<(?=\|[^<>|\s]{1,64}\|>|\uff5c[^<>\uff5c\s]{1,64}\uff5c>)")


def neutralize_control_tokens(text: str) -> str:
    """Put a backslash after the ``<`` of every ``<|name|>`` / ``<｜name｜>`` chat control token in ``text``
    (``<|im_end|>`` -> ``<\\|im_end|>``), the form most chat templates' turn markers take."""
    return _CONTROL_TOKEN.sub("<\\\\", text)


def escape_user_text(text: str, delimiters: Sequence[str] = DELIMITERS) -> str:
    """User text made safe to place in a prompt: control tokens neutralised, ``delimiters`` escaped (see
    :func:`escape_delimiters`)."""
    return escape_delimiters(neutralize_control_tokens(text), delimiters)


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


def added_tokens(tokenizer: object) -> list[str]:
    """Every token added to a Hugging Face tokenizer's vocabulary, special or not (a GRM trained with its template's
    phrases as single tokens has such tokens): what :func:`grm.model.protected_tokens` keeps user text from forming."""
    return sorted(
        str(getattr(t, "content", t)) for t in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values()
    )
