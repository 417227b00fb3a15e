"""The embedded default backend: Hugging Face transformers ``generate``, no server needed."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from grm.backends.base import Completion, GenerationRequest, Sampling, thinking_apart
from grm.escaping import ControlTokens, added_tokens
from grm.progress import loading_bars, progress_bar
from grm.seeding import random_seed, rng_for
from grm.thinking import opens_thinking

logger = logging.getLogger(__name__)


class _StopStrings(StoppingCriteria):
    """Stop each row once its generated text (from column ``start`` on) contains one of ``stops``; ``ends[row]``
    records how many tokens the row had generated then. Only the newest tokens are decoded at each step: an
    occurrence first completed by the newest token lies within as many tokens as it has UTF-8 bytes."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], start: int) -> None:
        self.tokenizer, self.stops, self.start = tokenizer, stops, start
        self.window = max(len(x.encode()) for x in stops) + 1
        self.ends: dict[int, int] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for r, row in enumerate(input_ids[:, self.start :].tolist()):
            if r not in self.ends:
                tail = self.tokenizer.decode(row[-self.window :], skip_special_tokens=True)
                if any(x in tail for x in self.stops):
                    self.ends[r] = len(row)
            done[r] = r in self.ends
        return done


class RowSampler(LogitsProcessor):
    """Samples every row of a batch from a random stream of its own, so that a row's tokens depend on its seed and
    its logits only, never on the other rows: ``seeds[r]`` seeds row ``r``.

    Each step, a row's logits are divided by ``temperature``, turned into probabilities and cut to the nucleus of
    mass ``top_p``; one uniform number drawn from the row's stream then picks a token by the inverse of their
    cumulative distribution. The scores returned are 0 for the picked token and -inf elsewhere, so that greedy
    decoding takes it. The streams are Python's ``random.Random`` on the host: the same seed draws the same
    numbers on every device. Cost per step: a softmax, a cumulative sum and a search over the vocabulary (plus a
    sort with ``top_p < 1``), as a batched sampler has.
    """

    def __init__(self, temperature: float, top_p: float, seeds: Sequence[int]) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 to sample, got {temperature}")
        self.temperature, self.top_p = temperature, top_p
        self.streams = [rng_for(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.streams):
            raise ValueError(f"{len(self.streams)} seeds for a batch of {scores.shape[0]} rows")
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1:
            probs = _nucleus(probs, self.top_p)
        cdf = probs.cumsum(dim=-1)
        # u in (0, 1]: the first token whose cumulative probability reaches u * total has a probability > 0
        u = torch.tensor([1.0 - stream.random() for stream in self.streams], dtype=cdf.dtype, device=cdf.device)
        picked = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).clamp_(max=cdf.shape[-1] - 1)
        return torch.full_like(scores, -math.inf).scatter_(-1, picked, 0.0)


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """``probs`` with the tokens outside each row's nucleus set to 0: the fewest likeliest tokens whose mass
    reaches ``top_p`` are kept (ties in a stable order)."""
    ranked, order = probs.sort(dim=-1, descending=True, stable=True)
    before = ranked.cumsum(dim=-1) - ranked
    return torch.zeros_like(probs).scatter_(-1, order, ranked.masked_fill(before >= top_p, 0.0))


def torch_dtype(dtype: str | torch.dtype) -> str | torch.dtype:
    """The torch dtype named ``dtype`` (``"float32"``, ``"bfloat16"``...; ``"auto"`` and a ``torch.dtype`` pass
    through); ValueError naming it when torch has no such dtype."""
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; expected e.g. 'auto', 'float32', 'bfloat16'")
    return value


class TransformersBackend:
    """Generate with a causal LM through ``model.generate``.

    All sequences of a ``generate`` call that share decoding settings are sorted by prompt length and run in
    left-padded batches of ``batch_size`` sequences (a request with ``n`` samples contributes ``n`` rows;
    greedy requests contribute one row, copied ``n`` times). Each sampled row draws from a random stream of its
    own (:class:`RowSampler`): sample ``i`` of a request seeded ``s`` uses the seed ``s + i``, as vLLM does, so
    its text depends on its prompt, seed and settings, not on the other rows of its batch (an unseeded request
    gets a fresh random seed). A row's token limit is its own too (``max_new_tokens``, cut where the prompt
    leaves less of the context). The caller's global RNGs are untouched. Left padding can change a row's logits
    in the last bits (kernels sum the padded positions' zeros in another order); with ``batch_size=1`` there is
    no padding, and the same row gives the same logits whatever else is generated.

    ``gguf_file="NAME.gguf"`` (a file in the folder ``model``) loads a GGUF model and its tokenizer through
    transformers' GGUF support (install the ``gguf`` extra); the weights are dequantized on load. A chat template
    that opens a thinking block in the prompt (``...<think>\\n``) gets its completions' thinking as
    ``Completion.reasoning`` (see :func:`grm.backends.base.thinking_apart`); ``added_tokens`` lists the tokenizer's
    added tokens, which a GRM keeps user text from forming (:func:`grm.model.protected_tokens`).
    """

    def __init__(
        self,
        model: str | Any,
        tokenizer: Any | None = None,
        *,
        device: str | None = None,
        dtype: str | torch.dtype = "auto",
        batch_size: int = 16,
        chat_template: str | None = None,
        progress: bool = True,
        trust_remote_code: bool = False,
        **model_kwargs: Any,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(model, str):
            self.name = model
            with loading_bars(progress):
                self.model = AutoModelForCausalLM.from_pretrained(
                    model, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code, **model_kwargs
                )
        else:
            self.model, self.name = model, getattr(model, "name_or_path", type(model).__name__)
        self.model.to(self.device).eval()
        gguf = {"gguf_file": model_kwargs["gguf_file"]} if model_kwargs.get("gguf_file") else {}  # model and tokenizer
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(
            self.name, trust_remote_code=trust_remote_code, **gguf
        )
        if chat_template is not None:
            self.tokenizer.chat_template = chat_template
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"the tokenizer of {self.name!r} has no chat template; pass chat_template=...")
        self.tokenizer.padding_side = "left"
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {e for e in ([eos] if isinstance(eos, int) else eos or []) if e is not None}
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)
        if not self.eos_ids:
            raise ValueError(f"{self.name!r} defines no EOS token, so generation could never stop")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.max_length = getattr(self.model.config, "max_position_embeddings", None)
        self.batch_size = batch_size
        self.progress = progress
        self.control_tokens = ControlTokens.of(self.tokenizer)
        self.added_tokens = added_tokens(self.tokenizer)

    def prompt_text(self, messages: list[dict[str, str]], prefix: str = "") -> str:
        """A chat prompt as text, ending with the assistant's generation header and then ``prefix``. The
        tokenizer's special tokens written inside the messages or the prefix are neutralised (see
        :class:`grm.escaping.ControlTokens`): only the chat template makes control tokens."""
        guard = self.control_tokens
        text = self.tokenizer.apply_chat_template(guard.messages(messages), tokenize=False, add_generation_prompt=True)
        return text + guard.escape(prefix)

    def prompt_ids(self, messages: list[dict[str, str]], prefix: str = "") -> list[int]:
        """The token ids of :meth:`prompt_text`."""
        return self.tokenizer(self.prompt_text(messages, prefix), add_special_tokens=False)["input_ids"]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        out: list[list[Completion | None]] = [[None] * r.n for r in requests]
        # (temperature, top_p, token limit, stop) -> rows of (request index, prompt ids, output slots, seed)
        rows: dict[tuple, list[tuple[int, list[int], list[int], int | None]]] = defaultdict(list)
        opened = set()  # requests whose chat template opened a thinking block: their text starts inside it
        for i, req in enumerate(requests):
            text = self.prompt_text(req.messages, req.prefix)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not req.prefix and opens_thinking(text):
                opened.add(i)
            if self.max_length is not None and len(ids) >= self.max_length:
                err = f"prompt has {len(ids)} tokens; the model's context is {self.max_length}"
                out[i] = [Completion("", 0, "error", err) for _ in range(req.n)]
                continue
            s = req.sampling
            limit = s.max_new_tokens if self.max_length is None else min(s.max_new_tokens, self.max_length - len(ids))
            key = (s.temperature, s.top_p, limit, s.stop)
            if s.temperature == 0:  # greedy: one row, copied to all n slots
                rows[key].append((i, ids, list(range(req.n)), None))
            else:
                seed = random_seed() if s.seed is None else s.seed
                rows[key].extend((i, ids, [j], seed + j) for j in range(req.n))
        total = sum(len(v) for v in rows.values())
        with progress_bar(total=total, desc="generate", unit="seq", progress=self.progress and total > 0) as bar:
            for (temperature, top_p, limit, stop), group in rows.items():
                group.sort(key=lambda r: len(r[1]))
                sampling = Sampling(temperature, limit, top_p, None, stop)
                for start in range(0, len(group), self.batch_size):
                    chunk = group[start : start + self.batch_size]
                    seeds = None if temperature == 0 else [seed for _, _, _, seed in chunk]
                    completions = self._generate_chunk([ids for _, ids, _, _ in chunk], sampling, seeds)
                    for (i, _, slots, _), completion in zip(chunk, completions):
                        for j in slots:
                            out[i][j] = completion
                    bar.update(len(chunk))
        for i in opened:
            out[i] = [thinking_apart(c) for c in out[i]]  # type: ignore[arg-type]
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate_chunk(
        self, prompts: list[list[int]], s: Sampling, seeds: Sequence[int | None] | None
    ) -> list[Completion]:
        """Generate one left-padded batch: greedy (``seeds`` None), or each row sampled with its seed in ``seeds``."""
        width = max(map(len, prompts))
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, ids in enumerate(prompts):
            input_ids[r, width - len(ids) :] = torch.tensor(ids)
            attention[r, width - len(ids) :] = 1
        kwargs: dict[str, Any] = dict(
            max_new_tokens=s.max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
        )
        if seeds is not None:
            kwargs["logits_processor"] = LogitsProcessorList([RowSampler(s.temperature, s.top_p, seeds)])  # type: ignore[arg-type]
        stops = _StopStrings(self.tokenizer, s.stop, width) if s.stop else None
        if stops is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([stops])
        generated = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), **kwargs
        )[:, width:].tolist()
        completions = []
        for r, row in enumerate(generated):
            stop = next((t for t, tok in enumerate(row) if tok in self.eos_ids), None)
            end = stops.ends.get(r) if stops is not None else None
            if end is not None and (stop is None or end <= stop):  # a stop string came first
                text = self.tokenizer.decode(row[:end], skip_special_tokens=True)
                cut, hit = min(((text.find(x), x) for x in s.stop if x in text), default=(len(text), None))
                completions.append(Completion(text[:cut], end, "stop", stop_string=hit))
                continue
            kept = row if stop is None else row[:stop]
            n_tokens = len(kept) + (stop is not None)
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            completions.append(Completion(text, n_tokens, "length" if stop is None else "stop"))
        return completions
