"""The Backend protocol: how grm asks an engine for text, and nothing about reward models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from grm.thinking import split_thinking
from grm.types import Message


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. ``temperature == 0`` means greedy decoding.

    ``stop``: generation ends at the first of these strings found in the *generated* text (not the prompt or
    prefix); the completion's text stops before it and ``Completion.stop_string`` names it.
    """

    temperature: float = 0.0
    max_new_tokens: int = 1024
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.stop, tuple | list) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop must be a sequence of non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class GenerationRequest:
    """Draw ``n`` completions of one chat prompt. ``messages`` end with the user turn to answer.

    With a ``prefix``, the assistant turn starts with that text and the completions continue it (their text
    excludes the prefix): how step-level search extends a partial answer.
    """

    messages: list[Message]
    n: int = 1
    sampling: Sampling = field(default_factory=Sampling)
    prefix: str = ""


@dataclass
class Completion:
    """One generated text. ``error`` is set (and ``text`` may be empty) when the backend could not produce it;
    a failed completion never raises out of ``generate`` so that the rest of a batch is kept. ``stop_string``
    is the ``Sampling.stop`` string that ended it (None when it ended otherwise: EOS, length, error).
    ``reasoning`` is the thinking an engine returned apart from the text (an OpenAI-compatible server's
    ``reasoning``/``reasoning_content``, or a thinking block the chat template opened in the prompt); None when
    there was none."""

    text: str
    n_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    stop_string: str | None = None
    reasoning: str | None = None


def thinking_apart(completion: Completion) -> Completion:
    """A completion generated after a prompt whose chat template opened a thinking block (``...<think>\\n``):
    the thinking moved to ``reasoning`` and the text after its ``</think>`` kept as the text (empty when the
    thinking never closed), as an OpenAI-compatible server with a reasoning parser returns it."""
    if completion.error:
        return completion
    split = split_thinking(completion.text, opened=True)
    return replace(completion, text=split.answer, reasoning=split.thinking)


@runtime_checkable
class Backend(Protocol):
    """Anything that turns a batch of requests into completions.

    ``generate`` returns one list per request, holding exactly ``request.n`` completions, in request order.
    It receives the whole batch at once so it can batch across queries and samples as the engine likes.
    A backend with a native async path may also define ``async def agenerate(requests)`` with the same contract;
    ``GRM.ascore_batch`` uses it when present (else it runs ``generate`` in a worker thread).
    """

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]: ...


class BackendUnavailableError(RuntimeError):
    """The engine produced nothing for a whole batch (e.g. its server cannot be reached): raised instead of
    returning only failed completions, since no part of the batch is lost by raising."""
