"""MetaRM: a scalar model that rates how likely each sampled judgement is to be correct (SPCT's meta RM).

Its input is one chat: the ``meta_rm`` template's system and user turns (the query and the responses, shown in
the order the judgement saw them) followed by the judgement's text as the assistant turn, rendered through the
model's own chat template. A sequence-classification head with one logit reads the last token.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grm.progress import loading_bars, progress_bar
from grm.prompts import PromptTemplate
from grm.types import Judgement, Message, normalize_responses

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

META_RM_TEMPLATE_FILE = "grm_meta_rm.j2"
"""Saved next to a trained meta RM's weights; :meth:`MetaRM.from_pretrained` uses it so that the model is read
with the template it was trained on."""


def load_template(template: str | Path | PromptTemplate | None = None) -> PromptTemplate:
    """The meta RM template: the built-in ``meta_rm`` (``None`` or ``"meta_rm"``), a loaded one, or a ``.j2`` path."""
    if isinstance(template, PromptTemplate):
        return template
    if template is None or template == "meta_rm":
        return PromptTemplate("meta_rm", resources.files("grm.templates").joinpath("meta_rm.j2").read_text("utf-8"))
    return PromptTemplate.load(template)


def build_messages(
    query: str | Sequence[Message],
    responses: Sequence[str],
    text: str,
    order: Sequence[int] | None = None,
    *,
    template: PromptTemplate | None = None,
) -> list[Message]:
    """The meta RM's chat for one judgement.

    ``responses`` are in the caller's order and ``order`` is the judgement's (``order[p]`` = caller index of the
    response shown at position ``p``; None: the caller's order; a pairwise or one-at-a-time judge shows some of
    them), so the judgement's "Response 1.." point at the texts it judged. ``text`` becomes the assistant turn.
    """
    responses = normalize_responses(responses)
    order = list(range(len(responses))) if order is None else list(order)
    if not order or len(set(order)) != len(order) or not all(0 <= i < len(responses) for i in order):
        raise ValueError(f"order {order} must list distinct indices of the {len(responses)} responses")
    if not isinstance(text, str):
        raise TypeError(f"judgement text must be a string, got {type(text).__name__}")
    messages = (template or load_template()).render(query, [responses[c] for c in order])
    return [*messages, {"role": "assistant", "content": text}]


def encode(tokenizer: Any, messages: list[Message], max_length: int | None = None) -> tuple[list[int], int]:
    """Token ids of ``messages`` through the tokenizer's chat template, and how many were cut.

    Over ``max_length`` tokens the front is cut, keeping the end of the judgement where its scores are.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if max_length is not None and len(ids) > max_length:
        return ids[-max_length:], len(ids) - max_length
    return ids, 0


class MetaRM:
    """A meta reward model: one logit per (query, responses, judgement), higher meaning more likely correct.

    ``model`` is a sequence-classification model with ``num_labels == 1``; ``tokenizer`` needs a chat template.
    Pass it to ``GRM.score(..., meta_rm=meta, k_meta=...)`` to vote only the judgements it rates highest.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        template: str | Path | PromptTemplate | None = None,
        device: str | None = None,
        batch_size: int = 8,
        max_length: int | None = None,
        progress: bool = True,
    ) -> None:
        num_labels = getattr(model.config, "num_labels", None)
        if num_labels != 1:
            raise ValueError(f"a meta RM needs a sequence-classification model with num_labels=1, got {num_labels}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the meta RM's tokenizer has no chat template; set tokenizer.chat_template")
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.template = load_template(template)
        self.pad_id = ensure_pad_id(model, tokenizer)
        self.batch_size = batch_size
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", None)
        self.progress = progress

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path | None = None,
        *,
        template: str | Path | PromptTemplate | None = None,
        device: str | None = None,
        dtype: str | torch.dtype = "auto",
        batch_size: int = 8,
        max_length: int | None = None,
        progress: bool = True,
        trust_remote_code: bool = False,
        **model_kwargs: Any,
    ) -> MetaRM:
        """Load a sequence-classification model and its tokenizer by local path or hub id.

        Without ``template``, a ``grm_meta_rm.j2`` saved with the model (by ``grm train meta-rm``) is used, else
        the built-in one. No ``path_or_id``: the default meta RM shipped with grm (see :mod:`grm.assets`).
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from grm.assets import default_meta_rm_path

        if path_or_id is None:
            path_or_id = default_meta_rm_path()

        with loading_bars(progress):
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path_or_id), dtype=dtype, trust_remote_code=trust_remote_code, **model_kwargs
            )
        tokenizer = AutoTokenizer.from_pretrained(str(path_or_id), trust_remote_code=trust_remote_code)
        saved = Path(path_or_id) / META_RM_TEMPLATE_FILE
        if template is None and saved.is_file():
            template = saved
        return cls(
            model,
            tokenizer,
            template=template,
            device=device,
            batch_size=batch_size,
            max_length=max_length,
            progress=progress,
        )

    def score(
        self, query: str | Sequence[Message], responses: Sequence[str], judgements: Sequence[Judgement | str]
    ) -> list[float]:
        """One score (a logit; sigmoid gives the probability) per judgement, in the order given.

        A string judgement is taken to show the responses in the order given.
        """
        return self.score_batch([(query, responses, judgements)])[0]

    def score_batch(
        self, entries: Sequence[tuple[str | Sequence[Message], Sequence[str], Sequence[Judgement | str]]]
    ) -> list[list[float]]:
        """Scores for many ``(query, responses, judgements)`` entries in length-sorted batches; one list each."""
        inputs: list[tuple[int, int, list[int]]] = []
        n_cut = 0
        for e, (query, responses, judgements) in enumerate(entries):
            for j, judgement in enumerate(judgements):
                text, order = (judgement, None) if isinstance(judgement, str) else (judgement.text, judgement.order)
                messages = build_messages(query, responses, text, order, template=self.template)
                ids, cut = encode(self.tokenizer, messages, self.max_length)
                n_cut += cut > 0
                inputs.append((e, j, ids))
        if n_cut:
            logger.warning(
                "%d meta RM inputs were longer than %d tokens; their fronts were cut", n_cut, self.max_length
            )
        out: list[list[float]] = [[0.0] * len(judgements) for _, _, judgements in entries]
        inputs.sort(key=lambda x: len(x[2]))
        with progress_bar(
            total=len(inputs), desc="meta RM", unit="seq", progress=self.progress and bool(inputs)
        ) as bar:
            for start in range(0, len(inputs), self.batch_size):
                chunk = inputs[start : start + self.batch_size]
                for (e, j, _), logit in zip(chunk, self._forward([ids for _, _, ids in chunk])):
                    out[e][j] = logit
                bar.update(len(chunk))
        return out

    def _forward(self, rows: list[list[int]]) -> list[float]:
        import torch

        batch = pad(rows, self.pad_id)
        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits
        return logits.float().reshape(len(rows)).tolist()


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token id lists into ``input_ids`` and ``attention_mask`` tensors."""
    import torch

    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, ids in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[r, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def ensure_pad_id(model: Any, tokenizer: Any) -> int:
    """The padding id the classifier skips when it looks for the last token; set on the model config if missing."""
    pad_id = model.config.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise ValueError("neither the model config nor the tokenizer defines a pad or EOS token id")
        model.config.pad_token_id = pad_id
    return pad_id
