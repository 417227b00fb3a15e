"""The policy a search draws solutions from: any grm Backend, how to prompt it and how to sample."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from grm.backends import Backend, Completion, GenerationRequest, Sampling
from grm.seeding import random_seed, request_seed
from grm.types import Message


@dataclass
class Policy:
    """A policy model served by any :class:`grm.backends.Backend`.

    ``prompt`` turns a problem into chat messages (default: one user turn, after ``system`` if given). Whole
    solutions get up to ``max_new_tokens``; in step-level search each step ends at ``step_delimiter`` (a stop
    string) or after ``max_step_tokens``, and the next step continues the partial answer as an assistant
    ``prefix``. Sampling is seeded from ``seed``, differently for every request and call; None draws a fresh seed,
    kept in ``seed`` so that a run can be repeated.
    """

    backend: Backend
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 1024
    max_step_tokens: int = 256
    step_delimiter: str = "\n\n"
    system: str | None = None
    prompt: Callable[[str], list[Message]] | None = None
    seed: int | None = None
    _calls: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not callable(getattr(self.backend, "generate", None)):
            raise TypeError(f"backend must have a generate(requests) method, got {type(self.backend).__name__}")
        if not self.step_delimiter:
            raise ValueError("step_delimiter must be a non-empty string")
        Sampling(self.temperature, self.max_new_tokens, self.top_p)  # validates the settings
        Sampling(self.temperature, self.max_step_tokens, self.top_p)
        if self.seed is None:
            self.seed = random_seed()
        elif isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise TypeError(f"seed must be an integer (or None to draw one), got {self.seed!r}")

    def messages(self, problem: str) -> list[Message]:
        """The chat messages the policy answers for ``problem``."""
        if self.prompt is not None:
            return self.prompt(problem)
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": problem}]

    def sample(self, asks: Sequence[tuple[str, str, int]], *, step: bool) -> list[list[Completion]]:
        """For each ``(problem, prefix, n)``, ``n`` completions continuing ``prefix``, all in one backend call.

        With ``step=True`` each completion stops at the step delimiter (``Completion.stop_string`` is then set);
        otherwise it runs to the end of the solution.
        """
        call = self._calls
        self._calls += 1
        requests = []
        for r, (problem, prefix, n) in enumerate(asks):
            seed = request_seed(self.seed, call, r)
            sampling = (
                Sampling(self.temperature, self.max_step_tokens, self.top_p, seed, (self.step_delimiter,))
                if step
                else Sampling(self.temperature, self.max_new_tokens, self.top_p, seed)
            )
            requests.append(GenerationRequest(self.messages(problem), n, sampling, prefix))
        outputs = self.backend.generate(requests) if requests else []
        if len(outputs) != len(requests):
            raise RuntimeError(f"backend returned {len(outputs)} results for {len(requests)} requests")
        for req, out in zip(requests, outputs):
            if len(out) != req.n:
                raise RuntimeError(f"backend returned {len(out)} completions where n={req.n}")
        return outputs
