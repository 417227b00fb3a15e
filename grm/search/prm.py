"""A process reward model (PRM) read through transformers: one probability per solution step, aggregated.

Convention (every part configurable): a candidate is split into steps on ``step_delimiter``; the model reads
``problem + separator + step_1 + step_tag + step_2 + step_tag + ... + step_k + step_tag``, where the step tag is
a single token, and step i's score is read at the i-th tag token:

- ``head="causal"``: a causal LM; the score is the probability of ``good_token`` against ``bad_token`` as the
  next token (Math-Shepherd's convention, with its tag ``" ки"`` and tokens ``"+"`` / ``"-"``);
- ``head="token_classification"``: a token classifier; the score is the softmax probability of
  ``positive_label``.

A candidate's score aggregates its step scores by ``last``, ``min``, ``mean`` or ``prod``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from grm.search.verifiers import Entry, Verification

logger = logging.getLogger(__name__)

AGGREGATES = ("last", "min", "mean", "prod")
HEADS = ("causal", "token_classification")


def aggregate(step_scores: Sequence[float], how: str) -> float:
    """One score from a solution's step scores: the ``last``, the ``min``, the ``mean`` or the ``prod``."""
    if how not in AGGREGATES:
        raise ValueError(f"unknown aggregate {how!r}; expected one of {', '.join(AGGREGATES)}")
    if not step_scores:
        raise ValueError("no step scores to aggregate")
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "mean":
        return float(sum(step_scores) / len(step_scores))
    return float(math.prod(step_scores))


class PRMVerifier:
    """Rate candidates with a transformers PRM (see the module docstring for the input convention).

    A candidate with no step, or whose input is longer than the model's context, gets ``failed_value`` and is
    counted in ``Verification.n_failed``. A PRM generates nothing, so its ``n_tokens`` are 0.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        head: str = "causal",
        step_tag: str = "<step>",
        step_delimiter: str = "\n\n",
        separator: str = "\n",
        good_token: str = "+",
        bad_token: str = "-",
        positive_label: int = 1,
        aggregate: str = "last",
        failed_value: float = 0.0,
        batch_size: int = 8,
    ) -> None:
        if head not in HEADS:
            raise ValueError(f"unknown PRM head {head!r}; expected one of {', '.join(HEADS)}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r}; expected one of {', '.join(AGGREGATES)}")
        if not step_delimiter:
            raise ValueError("step_delimiter must be a non-empty string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer, self.head = model, tokenizer, head
        self.step_tag, self.step_delimiter, self.separator = step_tag, step_delimiter, separator
        self.aggregate, self.failed_value, self.batch_size = aggregate, failed_value, batch_size
        self.tag_id = self._single_token(step_tag, "step_tag")
        if head == "causal":
            self.pair = [self._single_token(good_token, "good_token"), self._single_token(bad_token, "bad_token")]
        else:
            labels = model.config.num_labels
            if not 0 <= positive_label < labels:
                raise ValueError(
                    f"positive_label must be in 0..{labels - 1} (the model's labels), got {positive_label}"
                )
        self.positive_label = positive_label
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.max_length = getattr(model.config, "max_position_embeddings", None)
        self.device = next(model.parameters()).device

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        *,
        head: str = "causal",
        device: str | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        **kwargs: Any,
    ) -> PRMVerifier:
        """Load a PRM by local path or hub id; ``kwargs`` set the convention (see the class)."""
        from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

        from grm.backends.transformers import torch_dtype
        from grm.progress import loading_bars

        if head not in HEADS:
            raise ValueError(f"unknown PRM head {head!r}; expected one of {', '.join(HEADS)}")
        auto = AutoModelForCausalLM if head == "causal" else AutoModelForTokenClassification
        with loading_bars():  # transformers' bar only where grm's would show
            model = auto.from_pretrained(str(path_or_id), dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(path_or_id), trust_remote_code=trust_remote_code)
        return cls(model, tokenizer, head=head, **kwargs)

    def _single_token(self, text: str, name: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{name} {text!r} must be a single token of the PRM's tokenizer, got {len(ids)} tokens")
        return ids[0]

    def steps(self, candidate: str) -> list[str]:
        """The candidate's non-empty steps, with any step-tag text inside them removed."""
        parts = (s.replace(self.step_tag, "").strip() for s in candidate.split(self.step_delimiter))
        return [s for s in parts if s]

    def encode(self, problem: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids of the PRM input for these steps and the positions of their step tags."""
        text = problem.replace(self.step_tag, "") + self.separator + "".join(s + self.step_tag for s in steps)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        positions = [t for t, tok in enumerate(ids) if tok == self.tag_id]
        if len(positions) != len(steps):
            raise ValueError(
                f"found {len(positions)} step tags {self.step_tag!r} for {len(steps)} steps; the tag must tokenize "
                "as one token wherever it stands (e.g. an added special token)"
            )
        return ids, positions

    def step_log_probs(self, encoded: Sequence[tuple[list[int], list[int]]]) -> torch.Tensor:
        """Log-probabilities (good, not good) at every step tag of a batch, flattened in order: shape (tags, 2).

        Differentiable, so a tiny PRM can be trained with it (:func:`grm.tiny.build_tiny_prm`).
        """
        width = max(len(ids) for ids, _ in encoded)
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for r, (row, _) in enumerate(encoded):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
        rows = torch.tensor([r for r, (_, pos) in enumerate(encoded) for _ in pos], device=self.device)
        cols = torch.tensor([t for _, pos in encoded for t in pos], device=self.device)
        at = logits[rows, cols]
        if self.head == "causal":
            return torch.log_softmax(at[:, self.pair], dim=-1)
        log_p = torch.log_softmax(at, dim=-1)
        good = log_p[:, self.positive_label]
        rest = torch.cat([log_p[:, : self.positive_label], log_p[:, self.positive_label + 1 :]], dim=-1)
        return torch.stack([good, torch.logsumexp(rest, dim=-1)], dim=-1)

    @torch.inference_mode()
    def step_scores(self, entries: Sequence[tuple[str, str]]) -> list[list[float] | None]:
        """The probability that each step is good, per ``(problem, candidate)``; None for a candidate with no
        step or too long for the model's context."""
        out: list[list[float] | None] = [None] * len(entries)
        todo = []
        for e, (problem, candidate) in enumerate(entries):
            steps = self.steps(candidate)
            if not steps:
                continue
            ids, positions = self.encode(problem, steps)
            if self.max_length is not None and len(ids) > self.max_length:
                logger.warning(
                    "PRM input of %d tokens exceeds the context of %d; not scored", len(ids), self.max_length
                )
                continue
            todo.append((e, (ids, positions)))
        todo.sort(key=lambda t: len(t[1][0]))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            probs = self.step_log_probs([enc for _, enc in chunk])[:, 0].exp().tolist()
            at = 0
            for e, (_, positions) in chunk:
                out[e] = probs[at : at + len(positions)]
                at += len(positions)
        return out

    def verify_batch(self, entries: Sequence[Entry]) -> list[Verification]:
        """Rate all candidates of all problems, batched across problems."""
        flat = [(problem, c) for problem, cands in entries for c in cands]
        scores = self.step_scores(flat)
        out, at = [], 0
        for _, cands in entries:
            mine = scores[at : at + len(cands)]
            at += len(cands)
            out.append(
                Verification(
                    [self.failed_value if s is None else aggregate(s, self.aggregate) for s in mine],
                    0,
                    sum(s is None for s in mine),
                )
            )
        return out

    def __call__(self, problem: str, candidates: Sequence[str]) -> list[float]:
        return self.verify_batch([(problem, candidates)])[0].scores
