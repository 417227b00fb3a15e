"""De-templating: the conversation and the response inside a policy's chat-templated text, for a judge to read.

RL frameworks that hand a reward model text (OpenRLHF's ``query``: the prompt and the response decoded with the
chat special tokens) send ``<|im_start|>user\\n...<|im_end|>`` soup. :func:`detemplate` turns a prompt and its
query back into chat messages and the response, from the chat markers (:class:`ChatMarkers`): the special tokens of
a tokenizer (the policy's, or the GRM's) and any token written ``<|name|>`` or ``<｜name｜>`` (ChatML, Llama 3, Phi,
DeepSeek). The rules, which cover the common templates (ChatML, Llama 3, Gemma, Mistral, DeepSeek, Phi):

- a marker whose name is a role (``<|user|>``, ``<｜Assistant｜>``, ``[INST]`` for the user, ``[/INST]`` for the
  assistant) starts a turn of that role;
- after a marker without a role, a first line that is only a role name (``user``, ``model``...) starts a turn of
  that role (ChatML ``<|im_start|>user``, Gemma ``<start_of_turn>model``, Llama 3's header);
- text before any role is the system's (or the user's, when no role follows); text between markers belongs to the
  turn in progress, stripped of the blank space around it;
- roles fold onto the three a GRM takes: system (``developer``), user (``human``, ``tool``, ``ipython``...) and
  assistant (``model``, ``gpt``, ``bot``);
- the assistant turn the prompt opens (the generation prompt, with any text the template put in it, such as
  ``<think>``) is the start of the response.

A prompt with no marker at all is kept as it is, one user message. The response is the query after the prompt,
without the end-of-turn markers the policy wrote last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grm.types import Message

MARKER_FORMS = re.compile(r"<\|[^<>|\s]{1,64}\|>|<\uff5c[^<>\uff5c\s]{1,64}\uff5c>")
"""Chat markers written ``<|name|>`` or ``<｜name｜>``, recognised whatever the tokenizer."""
ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "tool": "user",
    "ipython": "user",
    "observation": "user",
    "function": "user",
    "assistant": "assistant",
    "model": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
}
_ROLE_LINE = re.compile(r"[ \t]*([A-Za-z_]+)[ \t]*(?:\r?\n|$)")
_WORD = re.compile(r"[a-z]+")


class ChatMarkers:
    """The markers a chat template writes: ``tokens`` (e.g. a tokenizer's special tokens) and every
    ``<|name|>`` / ``<｜name｜>`` form (:data:`MARKER_FORMS`)."""

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        self.tokens = sorted({t for t in tokens if isinstance(t, str) and t.strip()}, key=len, reverse=True)
        listed = "|".join(re.escape(t) for t in self.tokens)
        self.pattern = re.compile(f"{listed}|{MARKER_FORMS.pattern}" if listed else MARKER_FORMS.pattern)

    @classmethod
    def of(cls, tokenizer: Any) -> ChatMarkers:
        """The special tokens of a Hugging Face tokenizer (``all_special_tokens`` and every added token marked
        special); None or an object without them gives the ``<|name|>`` forms only."""
        tokens = set(getattr(tokenizer, "all_special_tokens", None) or ())
        for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
            if getattr(added, "special", False):
                tokens.add(str(getattr(added, "content", added)))
        return cls(tokens)

    @classmethod
    def load(cls, name_or_path: str | Path) -> ChatMarkers:
        """The markers of the tokenizer at ``name_or_path`` (loaded with ``transformers.AutoTokenizer``)."""
        from transformers import AutoTokenizer

        return cls.of(AutoTokenizer.from_pretrained(str(name_or_path)))

    def split(self, text: str) -> list[tuple[str | None, str]]:
        """``text`` as (marker, the text after it up to the next marker) pairs; the first marker is None."""
        out: list[tuple[str | None, str]] = []
        marker, start = None, 0
        for m in self.pattern.finditer(text):
            out.append((marker, text[start : m.start()]))
            marker, start = m.group(), m.end()
        out.append((marker, text[start:]))
        return out

    def strip_end(self, text: str) -> str:
        """``text`` without the markers (and the blank space between them) it ends with."""
        while True:
            stripped = text.rstrip()
            m = next((m for m in self.pattern.finditer(stripped) if m.end() == len(stripped)), None)
            if m is None:
                return text
            text = stripped[: m.start()]


def marker_role(marker: str) -> str | None:
    """The role a marker names itself (``<|user|>``, ``<｜Assistant｜>``, ``[INST]``, ``[/INST]``), else None."""
    if marker.upper().startswith("[/INST"):
        return "assistant"
    words = _WORD.findall(marker.lower())
    if words == ["inst"]:
        return "user"
    roles = {ROLES[w] for w in words if w in ROLES}
    return roles.pop() if len(roles) == 1 else None


def conversation(prompt: str, markers: ChatMarkers) -> tuple[list[Message], str]:
    """The chat messages a templated ``prompt`` holds (ending with a user turn) and the text of the assistant turn
    it opens (``""`` if none; see the module docs)."""
    pieces = markers.split(prompt)
    if len(pieces) == 1:
        return [{"role": "user", "content": prompt}], ""
    turns: list[tuple[str | None, str]] = []  # (role, content)
    role: str | None = None
    for marker, text in pieces:
        named = marker_role(marker) if marker is not None else None
        if named is not None:
            role = named
        elif marker is not None and (line := _ROLE_LINE.match(text)) and line.group(1).lower() in ROLES:
            role, text = ROLES[line.group(1).lower()], text[line.end() :]
        content = text.strip()
        if named is not None or content:
            if turns and turns[-1][0] == role:
                if content:
                    turns[-1] = (role, f"{turns[-1][1]}\n\n{content}" if turns[-1][1] else content)
            else:
                turns.append((role, content))
    opened = ""
    while turns and turns[-1][0] == "assistant":
        opened = turns.pop()[1] + opened
    if turns and turns[0][0] is None:
        turns[0] = ("system" if len(turns) > 1 else "user", turns[0][1])
    messages = [{"role": r, "content": c} for r, c in turns if c]
    if not messages or messages[-1]["role"] != "user":  # nothing read as the user's: the text without markers
        text = "".join(t for _, t in pieces).strip()
        return [{"role": "user", "content": text or prompt}], opened
    return messages, opened


def detemplate(prompt: str, query: str, markers: ChatMarkers) -> tuple[list[Message], str]:
    """(the conversation, the response) in ``query``, a policy's ``prompt`` followed by its response, both as the
    chat template wrote them. The response starts where ``prompt`` ends in ``query`` (its last 64 characters are
    looked for when a framework cut the prompt's start off) and loses its trailing end-of-turn markers; text of the
    assistant turn the prompt opened comes first. ValueError when the prompt's end is not in the query."""
    if query.startswith(prompt):
        response = query[len(prompt) :]
    else:
        tail = prompt[-64:]
        at = query.find(tail) if tail else -1
        if at < 0:
            raise ValueError("the query does not contain its prompt's end; send the prompt text the query holds")
        response = query[at + len(tail) :]
    messages, opened = conversation(prompt, markers)
    return messages, opened + markers.strip_end(response)
