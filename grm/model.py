"""GRM: prompt template + backend + parser + voting, behind ``score`` / ``score_batch``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from grm.backends import Backend, Completion, GenerationRequest, load_backend
from grm.escaping import ControlTokens
from grm.judges import JudgeFormat, get_judge
from grm.prompts import PromptTemplate
from grm.scoring import (
    Generate,
    JudgementRater,
    ScoringOptions,
    ScoringPlan,
    Step,
    drive,
    resolve_options,
    run_blocking,
)
from grm.types import Item, Message, Reward, normalize_score_range


class GRM:
    """A generative reward model: a judge format (how to prompt the judge and read its answers) on a backend.

    ``backend`` is any object with the :class:`grm.backends.Backend` ``generate`` method. ``judge`` names a judge
    format (:mod:`grm.judges`; default ``spct``, SPCT's own) or is a :class:`~grm.judges.JudgeFormat`.
    ``template`` (a built-in template name, a path to a jinja2 file or a :class:`~grm.prompts.PromptTemplate`)
    replaces the format's prompt, read the same way. ``score_range`` defaults to the one a given template declares,
    else the format's.
    """

    def __init__(
        self,
        backend: Backend,
        template: str | Path | PromptTemplate | None = None,
        *,
        judge: str | JudgeFormat | None = None,
        score_range: tuple[int, int] | None = None,
        max_new_tokens: int = 1024,
        max_retries: int = 0,
    ) -> None:
        if not callable(getattr(backend, "generate", None)):
            raise TypeError(f"backend must have a generate(requests) method, got {type(backend).__name__}")
        self.backend = backend
        self.judge = get_judge("spct" if judge is None else judge)
        if template is not None:
            self.judge = self.judge.with_template(template)
        self.template: PromptTemplate = self.judge.template  # type: ignore[assignment]
        if score_range is not None:
            self.score_range = normalize_score_range(score_range)
        elif template is not None and self.template.declares_score_range and self.judge.verdict != "pairwise":
            self.score_range = self.template.score_range
        else:
            self.score_range = self.judge.score_range
        self.max_new_tokens = max_new_tokens
        self.max_retries = max_retries
        self.protected = protected_tokens(backend, self.template)
        self._generate_lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path | None = None,
        backend: str = "transformers",
        *,
        judge: str | JudgeFormat | None = None,
        template: str | Path | PromptTemplate | None = None,
        score_range: tuple[int, int] | None = None,
        max_new_tokens: int | None = None,
        max_retries: int = 0,
        **backend_kwargs: Any,
    ) -> GRM:
        """Load a model by local path or hub id onto the named backend (``backend_kwargs`` go to it; a GGUF file
        in the folder loads with ``gguf_file="NAME.gguf"`` on the transformers backend, with the ``gguf`` extra).

        No ``path_or_id``: the default GRM shipped with grm (see :mod:`grm.assets`; it judges only the synthetic
        task's kinds of question). A ``grm_config.json`` in the model folder supplies what is left unset here
        (``judge``, ``template``, ``score_range``, ``max_new_tokens``); otherwise the ``spct`` format and 1024 tokens.
        """
        from grm.assets import default_grm_path, read_grm_config

        path = default_grm_path() if path_or_id is None else path_or_id
        saved = read_grm_config(path)
        format_ = get_judge(judge if judge is not None else saved.get("judge", "spct"))  # unknown names fail first
        engine = load_backend(backend, str(path), **backend_kwargs)
        return cls(
            engine,
            template if template is not None else saved.get("template"),
            judge=format_,
            score_range=score_range if score_range is not None else saved.get("score_range"),
            max_new_tokens=max_new_tokens or saved.get("max_new_tokens", 1024),
            max_retries=max_retries,
        )

    @classmethod
    def from_openai(
        cls,
        base_url: str | None,
        model: str,
        api_key: str | None = None,
        *,
        judge: str | JudgeFormat | None = None,
        template: str | Path | PromptTemplate | None = None,
        score_range: tuple[int, int] | None = None,
        max_new_tokens: int = 1024,
        max_retries: int = 0,
        **client_kwargs: Any,
    ) -> GRM:
        """A GRM served by an OpenAI-compatible server (``vllm serve``, SGLang, TGI, a hosted API).

        ``base_url`` is the API root, e.g. ``http://127.0.0.1:8000/v1`` (None: ``$OPENAI_BASE_URL``); ``api_key``
        defaults to ``$OPENAI_API_KEY``. ``client_kwargs`` go to :class:`grm.backends.openai.OpenAIBackend`
        (``max_concurrency``, ``timeout``, ``retries``, ...). ``max_retries`` resamples unparseable judgements.
        """
        from grm.backends.openai import OpenAIBackend

        format_ = get_judge("spct" if judge is None else judge)
        engine = OpenAIBackend(model, base_url, api_key=api_key, **client_kwargs)
        return cls(
            engine,
            template,
            judge=format_,
            score_range=score_range,
            max_new_tokens=max_new_tokens,
            max_retries=max_retries,
        )

    def build_prompt(
        self,
        query: str | Sequence[Message],
        responses: Sequence[str],
        *,
        principles: str | Sequence[str] | None = None,
        reference: str | None = None,
        hint: int | None = None,
    ) -> list[Message]:
        """The chat messages sent for these responses, in the order given (no shuffling), user text escaped for the
        judge format (its delimiters, and the engine's tokens the template uses: see :func:`protected_tokens`)."""
        return self.template.render(
            query,
            responses,
            score_range=self.score_range,
            principles=principles,
            reference=reference,
            hint=hint,
            delimiters=self.judge.delimiters,
            protect=self.protected,
        )

    def score(
        self,
        query: str | Sequence[Message],
        responses: Sequence[str],
        options: ScoringOptions | None = None,
        *,
        principles: str | Sequence[str] | None = None,
        reference: str | None = None,
        meta_rm: JudgementRater | None = None,
        **overrides: Any,
    ) -> Reward:
        """Score one query's responses: :meth:`score_batch` of one item (``overrides`` as there)."""
        item = Item(query, list(responses), principles=principles, reference=reference)  # type: ignore[arg-type]
        return self.score_batch([item], options, meta_rm=meta_rm, **overrides)[0]

    async def ascore(
        self,
        query: str | Sequence[Message],
        responses: Sequence[str],
        options: ScoringOptions | None = None,
        *,
        principles: str | Sequence[str] | None = None,
        reference: str | None = None,
        meta_rm: JudgementRater | None = None,
        **overrides: Any,
    ) -> Reward:
        """Async :meth:`score`."""
        item = Item(query, list(responses), principles=principles, reference=reference)  # type: ignore[arg-type]
        return (await self.ascore_batch([item], options, meta_rm=meta_rm, **overrides))[0]

    def score_batch(
        self,
        items: Iterable[Item | Mapping[str, Any] | Sequence[Any]],
        options: ScoringOptions | None = None,
        *,
        meta_rm: JudgementRater | None = None,
        keys: Sequence[int | str] | None = None,
        **overrides: Any,
    ) -> list[Reward]:
        """Draw ``k`` judgements per item in one backend call and vote them.

        ``options`` (a :class:`grm.ScoringOptions`; default: its defaults), with any of its fields overridden by
        keyword (``k=8, seed=0``). Responses are shuffled before each sample and scores mapped back to the
        caller's order. Each item is seeded by ``seed`` and its key: ``keys`` (one integer or string per item, e.g. its
        row index or id in a larger job), else its ``id`` (:class:`grm.Item`), else its position in ``items``; its
        reward depends on that seed only, not on the other items (with a batch-invariant backend, see the README's
        Reproducibility), so a job scored in chunks with ``keys`` equals the job scored at once. ``k == 1`` decodes
        greedily unless ``temperature`` is given; ``k > 1`` samples at temperature 0.5. Samples whose scores cannot
        be read are resampled up to ``max_retries`` times (default: the model's), then left out of the vote and counted.
        With a ``meta_rm``, every judgement is rated and only the ``k_meta`` rated highest (default ``k // 2``,
        at least 1) are voted; ``Reward.meta_scores`` and ``Reward.kept`` record it.

        Adaptive compute (docs/adaptive-compute.md): ``adaptive=True`` draws the k samples in rounds of
        ``adaptive_round`` (one backend call per round for all undecided items) and stops an item once its
        leader cannot be overtaken by the samples left (``risk=0``: the best response is exactly fixed-k
        voting's), or with ``risk=0.01`` once the estimated chance that all k would pick another is at most 1%
        (:func:`grm.voting.decision_risk`). ``budget=N`` (or a fraction of ``k * len(items)``) caps the
        judgements of the whole call, giving each round to the least settled items. With a ``meta_rm`` the
        decision is made on the judgements it keeps. ``len(Reward.judgements)`` is the number of samples an item
        drew (``Reward.n_drawn`` counts resamples too), and ``rewards`` sum only those (``mean`` stays
        comparable).

        Raises :class:`grm.backends.BackendUnavailableError` when the backend produced nothing for the batch
        (e.g. its server is down); if that happens while resampling, the judgements already drawn are kept.
        The algorithm is :class:`grm.scoring.ScoringPlan`.
        """
        plan = self._plan(items, options, overrides, meta_rm, keys)

        def execute(step: Step) -> Any:
            if isinstance(step, Generate):
                return self.backend.generate(step.requests)
            return meta_rm.score_batch(step.entries)  # type: ignore[union-attr]

        return run_blocking(plan.steps(), execute)

    async def ascore_batch(
        self,
        items: Iterable[Item | Mapping[str, Any] | Sequence[Any]],
        options: ScoringOptions | None = None,
        *,
        meta_rm: JudgementRater | None = None,
        keys: Sequence[int | str] | None = None,
        **overrides: Any,
    ) -> list[Reward]:
        """Async :meth:`score_batch` (same arguments, same results).

        Uses the backend's ``agenerate`` when it has one (e.g. the HTTP backend); otherwise runs ``generate`` in
        a worker thread, one call at a time per GRM, so the event loop stays free. A meta RM runs in a thread.
        """
        plan = self._plan(items, options, overrides, meta_rm, keys)

        async def execute(step: Step) -> Any:
            if isinstance(step, Generate):
                return await self._agenerate(step.requests)
            return await asyncio.to_thread(meta_rm.score_batch, step.entries)  # type: ignore[union-attr]

        return await drive(plan.steps(), execute)

    def _plan(
        self,
        items: Iterable[Item | Mapping[str, Any] | Sequence[Any]],
        options: ScoringOptions | None,
        overrides: Mapping[str, Any],
        meta_rm: JudgementRater | None,
        keys: Sequence[int | str] | None,
    ) -> ScoringPlan:
        return ScoringPlan(
            items,
            resolve_options(options, overrides),
            prompt=self._prompt,
            score_range=self.score_range,  # type: ignore[arg-type]
            max_new_tokens=self.max_new_tokens,
            max_retries=self.max_retries,
            judge=self.judge,
            rated=meta_rm is not None,
            keys=keys,
        )

    def _prompt(self, item: Item, order: Sequence[int]) -> list[Message]:
        """The prompt showing ``item``'s responses in ``order``."""
        hint = item.hint if item.hint is None or len(order) == 1 else list(order).index(item.hint)
        return self.build_prompt(
            item.query,
            [item.responses[p] for p in order],
            principles=item.principles,
            reference=item.reference,
            hint=hint,
        )

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        native = getattr(self.backend, "agenerate", None)
        if native is not None:
            return await native(requests)

        def locked() -> list[list[Completion]]:
            with self._generate_lock:
                return self.backend.generate(requests)

        return await asyncio.to_thread(locked)


def protected_tokens(backend: Backend, template: PromptTemplate) -> ControlTokens | None:
    """The engine's added tokens (special or not: ``backend.added_tokens``, which the transformers and vLLM
    backends expose) that the template's own text contains, e.g. a ``[The End of Response `` token of a GRM trained
    with its delimiters as single tokens. User text is kept from forming them, so it can never be tokenized into
    the template's own ids. None when the backend cannot tell (an HTTP server: docs/scoring.md says what then)."""
    tokens = [t for t in getattr(backend, "added_tokens", ()) or () if isinstance(t, str) and t in template.source]
    return ControlTokens(tokens) if tokens else None
