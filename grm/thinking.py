"""Thinking blocks: the reasoning a judge writes before its answer, kept apart so that a verdict is never read from it.

A thinking model writes ``<think>...</think>`` and then its answer; a chat template may open the block itself
(the generation prompt ends with ``<think>``), so the model's text starts inside it; and an OpenAI-compatible server
with a reasoning parser returns the reasoning separately (``reasoning_content``). :func:`split_thinking` reads all
three the same way: everything up to the **last** closing tag is thinking (a ``</think>`` quoted inside the
thinking cannot end it early), the rest is the answer. A block opened and never closed has no answer at all: the
judge was cut off while thinking, and nothing in the thinking is read.

:func:`strip_thinking` is for the other side of RL: a policy's response with its own thinking block and stray chat
special tokens, cleaned before a judge sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPEN = "<think>"
CLOSE = "</think>"
_OPEN_AT_START = re.compile(r"\A\s*<think>", re.I)
_CLOSE = re.compile(r"</think>", re.I)
_OPENS_BLOCK = re.compile(r"<think>\s*\Z", re.I)
_END_TOKENS = re.compile(
    r"(?:\s*(?:<\|(?:im_end|eot_id|endoftext|end|eom_id|end_of_text)\|>|</s>|<eos>|<end_of_turn>|<｜end▁of▁sentence｜>))+"
    r"\s*\Z"
)


@dataclass(frozen=True)
class Split:
    """A completion read as ``thinking`` (None: it did not think) and ``answer``; ``unfinished`` when a thinking
    block was opened and never closed (then ``answer`` is empty)."""

    thinking: str | None
    answer: str
    unfinished: bool = False


def split_thinking(text: str, reasoning: str | None = None, *, opened: bool = False) -> Split:
    """Separate a completion's thinking from its answer.

    ``reasoning``: the thinking an engine returned separately (``text`` is then the answer as is, and an empty
    ``text`` after reasoning means the judge never answered). ``opened``: the prompt ended inside a thinking
    block (the chat template opened it), so ``text`` starts there. Otherwise a ``text`` starting with ``<think>``
    (after blanks) opens one, and a ``</think>`` without an opening tag closes one the template opened.
    """
    if reasoning is not None:
        inline = split_thinking(text)  # a server without a reasoning parser may still leave tags in the text
        thinking = reasoning if inline.thinking is None else f"{reasoning}\n{inline.thinking}"
        return Split(thinking, inline.answer, unfinished=inline.unfinished or (not text.strip() and bool(reasoning)))
    start = _OPEN_AT_START.match(text)
    closes = list(_CLOSE.finditer(text))
    if start is None and not opened and not closes:
        return Split(None, text)
    body_start = start.end() if start else 0
    if not closes or closes[-1].start() < body_start:
        return Split(text[body_start:].strip(), "", unfinished=True)
    last = closes[-1]
    return Split(text[body_start : last.start()].strip(), text[last.end() :].lstrip())


def opens_thinking(prompt: str) -> bool:
    """Whether a rendered generation prompt ends inside an opened thinking block (``...<think>\\n``)."""
    return bool(_OPENS_BLOCK.search(prompt))


def strip_thinking(response: str) -> str:
    """A policy's response as a judge should see it: its thinking block (see :func:`split_thinking`) and trailing
    chat special tokens (``<|im_end|>``, ``</s>``, ``<eos>``...) removed. A response that never finished thinking
    becomes empty."""
    return _END_TOKENS.sub("", split_thinking(response).answer).strip()
