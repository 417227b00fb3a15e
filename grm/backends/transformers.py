"""The embedded default backend: Hugging Face transformers ``generate``, no server needed."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from grm.backends.base import Completion, GenerationRequest, Sampling
from grm.prompts import ControlTokens

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


def _dtype(dtype: str | torch.dtype) -> str | torch.dtype:
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
    greedy requests contribute one row, copied ``n`` times). Sampling is seeded per batch from the first
    seeded request in it, inside a forked RNG, so the caller's global RNG is untouched.
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
            self.model = AutoModelForCausalLM.from_pretrained(
                model, dtype=_dtype(dtype), trust_remote_code=trust_remote_code, **model_kwargs
            )
        else:
            self.model, self.name = model, getattr(model, "name_or_path", type(model).__name__)
        self.model.to(self.device).eval()
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(self.name, trust_remote_code=trust_remote_code)
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

    def prompt_ids(self, messages: list[dict[str, str]], prefix: str = "") -> list[int]:
        """Token ids of a chat prompt, ending with the assistant's generation header and then ``prefix``. The
        tokenizer's special tokens written inside the messages or the prefix are neutralised (see
        :class:`grm.prompts.ControlTokens`): only the chat template makes control tokens."""
        guard = self.control_tokens
        text = self.tokenizer.apply_chat_template(guard.messages(messages), tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text + guard.escape(prefix), add_special_tokens=False)["input_ids"]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        out: list[list[Completion | None]] = [[None] * r.n for r in requests]
        # (temperature, top_p, max_new_tokens, stop) -> rows of (request index, prompt ids, output slots)
        rows: dict[tuple, list[tuple[int, list[int], list[int]]]] = defaultdict(list)
        for i, req in enumerate(requests):
            ids = self.prompt_ids(req.messages, req.prefix)
            if self.max_length is not None and len(ids) >= self.max_length:
                err = f"prompt has {len(ids)} tokens; the model's context is {self.max_length}"
                out[i] = [Completion("", 0, "error", err) for _ in range(req.n)]
                continue
            s = req.sampling
            key = (s.temperature, s.top_p, s.max_new_tokens, s.stop)
            slots = list(range(req.n))
            if s.temperature == 0:  # greedy: one row, copied to all n slots
                rows[key].append((i, ids, slots))
            else:
                rows[key].extend((i, ids, [j]) for j in slots)
        total = sum(len(v) for v in rows.values())
        with tqdm(total=total, desc="generate", unit="seq", disable=not self.progress or total == 0) as bar:
            for (temperature, top_p, max_new, stop), group in rows.items():
                group.sort(key=lambda r: len(r[1]))
                for start in range(0, len(group), self.batch_size):
                    chunk = group[start : start + self.batch_size]
                    seed = next(
                        (requests[i].sampling.seed for i, _, _ in chunk if requests[i].sampling.seed is not None), None
                    )
                    sampling = Sampling(temperature, max_new, top_p, seed, stop)
                    for (i, _, slots), completion in zip(chunk, self._generate_chunk([c[1] for c in chunk], sampling)):
                        for j in slots:
                            out[i][j] = completion
                    bar.update(len(chunk))
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate_chunk(self, prompts: list[list[int]], s: Sampling) -> list[Completion]:
        width = max(map(len, prompts))
        max_new = s.max_new_tokens
        if self.max_length is not None:
            max_new = max(1, min(max_new, self.max_length - width))
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, ids in enumerate(prompts):
            input_ids[r, width - len(ids) :] = torch.tensor(ids)
            attention[r, width - len(ids) :] = 1
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new, pad_token_id=self.pad_id, eos_token_id=sorted(self.eos_ids)
        )
        if s.temperature > 0:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        stops = _StopStrings(self.tokenizer, s.stop, width) if s.stop else None
        if stops is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([stops])
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if s.seed is not None:
                torch.manual_seed(s.seed)
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
