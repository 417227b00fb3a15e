"""The vLLM backend: a whole batch in one offline ``LLM.generate`` call, prefix caching on, ``n=`` per prompt."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from grm.backends.base import Completion, GenerationRequest, thinking_apart
from grm.escaping import ControlTokens, added_tokens
from grm.progress import enabled
from grm.thinking import opens_thinking

logger = logging.getLogger(__name__)

CPU_BATCHED_TOKENS = 4096
"""vLLM's default token budget per engine step on CPU; raised to the context length when prefill is not chunked."""


class VLLMBackend:
    """Generate with an in-process vLLM engine (``vllm.LLM``).

    ``engine_args`` go to ``vllm.LLM`` as they are (``tensor_parallel_size``, ``dtype``, ``gpu_memory_utilization``,
    ``max_model_len``, ``enforce_eager``, ``seed``, ...); prefix caching is on unless ``enable_prefix_caching=False``.
    On CPU, chunked prefill is off unless ``enable_chunked_prefill`` is given (see :func:`_prefill_whole_prompts`).
    Every ``generate`` is one engine call: each request becomes one prompt with ``n`` samples (the engine shares
    its prefill), greedy requests one sample copied ``n`` times. A request's ``Sampling.seed`` seeds its samples
    (vLLM gives sample i the seed ``seed + i``), so results do not depend on what else is in the batch.
    Prompts are the tokenizer's chat template applied as in the transformers backend, so both see the same ids.
    """

    def __init__(
        self,
        model: str,
        *,
        chat_template: str | None = None,
        progress: bool = True,
        enable_prefix_caching: bool = True,
        **engine_args: Any,
    ) -> None:
        from vllm import LLM
        from vllm.platforms import current_platform

        self.name = model
        engine_args["enable_prefix_caching"] = enable_prefix_caching
        if current_platform.is_cpu() and "enable_chunked_prefill" not in engine_args:
            _prefill_whole_prompts(model, engine_args)
        self.llm = LLM(model, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        if chat_template is not None:
            self.tokenizer.chat_template = chat_template
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"the tokenizer of {model!r} has no chat template; pass chat_template=...")
        self.max_model_len: int = self.llm.llm_engine.model_config.max_model_len
        self.control_tokens = ControlTokens.of(self.tokenizer)
        self.added_tokens = added_tokens(self.tokenizer)
        self.progress = progress
        self._lock = threading.Lock()  # one engine call at a time (ascore runs generate in worker threads)

    def prompt_texts(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """Each request's chat prompt, ending with the assistant's generation header and then its ``prefix``; the
        tokenizer's special tokens written inside messages or prefixes are neutralised, as in the transformers
        backend."""
        guard = self.control_tokens
        return [
            self.tokenizer.apply_chat_template(guard.messages(r.messages), tokenize=False, add_generation_prompt=True)
            + guard.escape(r.prefix)
            for r in requests
        ]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        out: list[list[Completion]] = [[] for _ in requests]
        if not requests:
            return out
        texts = self.prompt_texts(requests)
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        prompts, params, sent = [], [], []
        for i, (req, prompt) in enumerate(zip(requests, ids)):
            if len(prompt) >= self.max_model_len:
                err = f"prompt has {len(prompt)} tokens; the model's context is {self.max_model_len}"
                out[i] = [Completion("", 0, "error", err) for _ in range(req.n)]
                continue
            s = req.sampling
            prompts.append(TokensPrompt(prompt_token_ids=prompt))
            params.append(
                SamplingParams(
                    n=1 if s.temperature == 0 else req.n,
                    temperature=s.temperature,
                    top_p=s.top_p,
                    max_tokens=s.max_new_tokens,
                    seed=s.seed,
                    stop=list(s.stop) or None,
                )
            )
            sent.append(i)
        if prompts:
            with self._lock:
                results = self.llm.generate(prompts, params, use_tqdm=enabled(self.progress))
            for i, result in zip(sent, results):
                completions = [_completion(o) for o in sorted(result.outputs, key=lambda o: o.index)]
                if not requests[i].prefix and opens_thinking(texts[i]):  # the chat template opened a thinking block
                    completions = [thinking_apart(c) for c in completions]
                out[i] = completions * requests[i].n if len(completions) == 1 else completions
        return out

    def close(self) -> None:
        """Stop the engine's worker processes now (they also stop when the process exits)."""
        self.llm.llm_engine.engine_core.shutdown()


def _prefill_whole_prompts(model: str, engine_args: dict[str, Any]) -> None:
    """Turn chunked prefill off (vLLM's CPU worker cannot rewind the sampler of a seeded request whose prefill
    was split across steps: "CPU Generator does not use offset" kills the engine), with a token budget per step
    that fits the longest prompt."""
    from vllm import EngineArgs

    engine_args["enable_chunked_prefill"] = False
    if "max_num_batched_tokens" not in engine_args:
        max_len = EngineArgs(model=model, **engine_args).create_model_config().max_model_len
        engine_args["max_num_batched_tokens"] = max(max_len, CPU_BATCHED_TOKENS)
    logger.info("vLLM on CPU: chunked prefill off, max_num_batched_tokens=%d", engine_args["max_num_batched_tokens"])


def _completion(output: Any) -> Completion:
    """A vLLM ``CompletionOutput`` as a Completion; ``stop_reason`` is the stop string when one ended it."""
    stop = output.stop_reason if isinstance(output.stop_reason, str) else None
    return Completion(output.text, len(output.token_ids), output.finish_reason, stop_string=stop)
