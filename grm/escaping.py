"""Escaping user text so that it cannot pass for a prompt's structure or a chat template's control tokens.

- Response blocks are delimited by lines such as ``[The Start of Response 2]``. Every line of user text that
  looks like a delimiter (``[The Start of ...]`` or ``[The End of ...]``) gets a leading backslash; see
  :func:`escape_delimiters`. "Looks like" is judged after Unicode normalisation: any line break (``\r``,
  U+2028, U+0085, ``\v``, ``\f``...), fullwidth or look-alike brackets and letters, and invisible characters
  (zero-width, BOM) do not hide a delimiter. Templates of your own should use the same delimiter shape.
- Chat control tokens written as ``<|name|>`` or ``<｜name｜>`` (ChatML's ``<|im_end|>``, Llama 3's
  ``<|eot_id|>``...) get a backslash after their ``<`` (:func:`neutralize_control_tokens`), so that the model's
  tokenizer cannot read them as real turn markers. The transformers and vLLM backends also neutralise every
  special token of the model's own tokenizer (:class:`ControlTokens`).

Everything else in user text is shown unchanged. This module knows text only: nothing of templates or engines.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from grm.types import Message

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
