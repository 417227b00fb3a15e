"""The scoring plan: how one ``score_batch`` call turns items into rewards, written once and without I/O.

A :class:`ScoringPlan` holds the whole algorithm as a generator of typed steps (:meth:`ScoringPlan.steps`): it
yields a :class:`Generate` (requests for the backend) or a :class:`Rate` (judgements for the meta RM), is sent
each step's reply (or thrown the error raised while getting it) and returns one :class:`~grm.types.Reward` per
item. :func:`drive` carries a plan out with an executor, the one function that performs a step: ``GRM.ascore_batch``
awaits it with an async executor, ``GRM.score_batch`` runs it with a blocking one through :func:`run_blocking`
(no event loop). The plan's stages:

1. **rounds**: all ``k`` samples of every item in one round, or with ``adaptive`` ``adaptive_round`` at a time,
   an item leaving once its leader cannot be overtaken by the samples left;
2. **draw**: a round's generation call, then **retry**: resample, up to ``max_retries`` times, the samples whose
   scores could not be read;
3. **rate**: with a meta RM, one step rating every item's judgements;
4. **vote**: sum each response's scores over the (kept) valid judgements.

Every sample shows the responses in an order of its own; samples that drew the same order share one request
(``n=``), and :func:`read_judgement` maps the scores back to the caller's order. Everything random about an item
(its orders, its requests' engine seeds, its tie-breaks) derives from the item's own seed, made of the call's
seed and the item's key (:func:`~grm.seeding.item_seed`; the key defaults to the item's position in the call, and
a caller scoring a job in chunks passes each item's row index or id), never from the other items: with a backend
whose samples depend only on their own seed, an item's reward is the same in any batch, chunk or order.
:class:`ScoringOptions` holds the settings every scoring entry point takes and passes on whole.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import numbers
import random
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from grm import voting
from grm.backends import BackendUnavailableError, Completion, GenerationRequest, Sampling
from grm.parsing import parse_judgement
from grm.seeding import item_seed, random_seed, request_seed, seeded_rng
from grm.types import Item, Judgement, Message, Reward

logger = logging.getLogger(__name__)

SAMPLING_TEMPERATURE = 0.5
"""Temperature for k > 1 samples and for retries of failed samples (the paper samples at 0.5)."""

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ScoringOptions:
    """How to score, validated once; every scoring entry point takes these whole (or one by one as keywords).

    - ``k``: judgements sampled per item;
    - ``shuffle``: show the responses in a fresh random order for each sample (scores are mapped back);
    - ``seed``: seeds orders, engine sampling and tie-breaks (None: a random seed per call);
    - ``temperature``: None means greedy for ``k == 1`` and 0.5 (SPCT's) otherwise;
    - ``max_new_tokens``, ``max_retries``: None means the model's (resample unreadable judgements that often);
    - ``k_meta``: with a meta RM, how many of the judgements it rates highest are voted (None: ``k // 2``, >= 1);
    - ``adaptive``: draw the samples in rounds of ``adaptive_round`` and stop an item once its leader cannot be
      overtaken by the samples left (same best response as fixed-k voting, fewer samples; not with a meta RM).

    The meta RM itself is not an option: it is a model, passed beside the options (``meta_rm=``).
    """

    k: int = 1
    shuffle: bool = True
    seed: int | None = None
    temperature: float | None = None
    max_new_tokens: int | None = None
    max_retries: int | None = None
    k_meta: int | None = None
    adaptive: bool = False
    adaptive_round: int = 4

    def __post_init__(self) -> None:
        for name, low in (("k", 1), ("adaptive_round", 1)):
            _set_integer(self, name, low)
        for name, low in (("seed", None), ("max_new_tokens", 1), ("max_retries", 0), ("k_meta", 1)):
            if getattr(self, name) is not None:
                _set_integer(self, name, low)
        if self.k_meta is not None and self.k_meta > self.k:
            raise ValueError(f"k_meta must be in 1..k={self.k}, got {self.k_meta}")
        for name in ("shuffle", "adaptive"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        t = self.temperature
        if t is not None and (isinstance(t, bool) or not isinstance(t, numbers.Real) or not t >= 0):
            raise ValueError(f"temperature must be a number >= 0 (or None for the default), got {t!r}")

    def replace(self, **changes: Any) -> ScoringOptions:
        """A copy with ``changes`` applied (and validated); TypeError naming any option that does not exist."""
        known = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise TypeError(f"unknown scoring option(s) {unknown}; the options are {', '.join(known)}")
        return dataclasses.replace(self, **changes)


def resolve_options(
    options: ScoringOptions | None, overrides: Mapping[str, Any], default: ScoringOptions | None = None
) -> ScoringOptions:
    """What a function taking ``options=None, **overrides`` scores with: ``options`` (None: ``default``, else the
    defaults) with the ``overrides`` applied."""
    base = options if options is not None else default if default is not None else ScoringOptions()
    if not isinstance(base, ScoringOptions):
        raise TypeError(f"options must be a grm.ScoringOptions, got {type(base).__name__}")
    return base.replace(**overrides) if overrides else base


def check_meta_rm(options: ScoringOptions, rated: bool) -> None:
    """ValueError for options that cannot work with (``rated``) or without a meta RM."""
    if options.k_meta is not None and not rated:
        raise ValueError("k_meta was given without a meta_rm")
    if options.adaptive and rated:
        raise ValueError("adaptive=True cannot be combined with a meta_rm: it ranks all k judgements at once")


def _set_integer(options: ScoringOptions, name: str, low: int | None) -> None:
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    object.__setattr__(options, name, int(value))


# ---------------------------------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Generate:
    """Step: draw completions of ``requests``; the reply is what ``Backend.generate(requests)`` returns."""

    requests: list[GenerationRequest]


@dataclass(frozen=True)
class Rate:
    """Step: rate each item's judgements; the reply is what ``JudgementRater.score_batch(entries)`` returns."""

    entries: list[tuple[list[Message], list[str], list[Judgement]]]


Step = Generate | Rate


class JudgementRater(Protocol):
    """What meta-guided voting needs from a meta RM (see :class:`grm.MetaRM`).

    ``score_batch`` gets, per item, the normalized query messages, the responses in the caller's order and the
    item's k judgements (each with its ``order``: the response order its text refers to), and returns one
    float per judgement, higher meaning more likely correct.
    """

    def score_batch(
        self, entries: Sequence[tuple[list[Message], list[str], list[Judgement]]]
    ) -> Sequence[Sequence[float]]: ...


# ---------------------------------------------------------------------------------------------------- pieces


def read_judgement(completion: Completion, order: Sequence[int], score_range: tuple[int, int]) -> Judgement:
    """The judgement in ``completion``, generated for a prompt that showed the responses in ``order`` (``order[p]``
    is the caller's index of the response shown at position ``p``), with its scores in the caller's order. A
    failed completion gives an invalid judgement that keeps the text and the error; so does one cut at the token
    limit before its final scores line (see :func:`~grm.parsing.parse_judgement`)."""
    order = list(order)
    if completion.error:
        return Judgement(text=completion.text, order=order, error=completion.error, n_tokens=completion.n_tokens)
    truncated = completion.finish_reason == "length"
    try:  # never raises on model output; this guards against a backend handing over something other than text
        judgement = parse_judgement(completion.text, len(order), score_range, truncated=truncated)
    except Exception as e:
        judgement = Judgement(text=str(completion.text), error=f"unreadable completion: {type(e).__name__}: {e}")
    judgement.order, judgement.n_tokens = order, completion.n_tokens
    if judgement.scores is not None:
        caller = [0] * len(order)
        for shown, index in enumerate(order):
            caller[index] = judgement.scores[shown]
        judgement.scores = caller
    return judgement


def chunks(n: int, n_max: int, rng: random.Random | None = None) -> list[list[int]]:
    """Indices ``0..n-1`` in the fewest chunks of at most ``n_max``, for judging a long list of responses listwise.

    Without ``rng``: in order, every chunk full but the last. With ``rng``: after a random permutation, with sizes
    differing by at most one, so that chunk membership does not follow the order given (e.g. a policy's sampling
    order) and no response is left to be judged nearly alone.
    """
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    if rng is None:
        return [list(range(start, min(n, start + n_max))) for start in range(0, n, n_max)]
    order = rng.sample(range(n), n)
    count = -(-n // n_max)
    size, extra = divmod(n, count) if n else (0, 0)
    out, start = [], 0
    for c in range(count):
        end = start + size + (c < extra)
        out.append(order[start:end])
        start = end
    return out


def generation_call(round_index: int, attempt: int, max_retries: int) -> int:
    """The number of a scoring run's generation call, from which its requests are seeded: each round owns
    ``max_retries + 1`` numbers (its draw, then its retries), so a round's seeds never depend on how many retries
    the rounds before it needed."""
    return round_index * (max_retries + 1) + attempt


# ---------------------------------------------------------------------------------------------------- the plan


@dataclass
class _ItemState:
    """One item's progress: its seed and the random stream drawn from it, its response order for each of the k
    samples, the judgements drawn so far (None: not yet), how many samples are drawn and how many resamples it
    took."""

    item: Item
    seed: int
    rng: random.Random
    orders: list[list[int]]
    judgements: list[Judgement | None]
    drawn: int = 0
    n_retries: int = 0


class ScoringPlan:
    """One ``score_batch`` call's scoring, without I/O: drive :meth:`steps` (see the module docs).

    ``prompt(item, order)`` gives the chat messages that show ``item``'s responses in ``order``; ``score_range``
    is the model's; ``max_new_tokens`` and ``max_retries`` are the model's, used where ``options`` leave them
    unset; ``rated`` says that a meta RM will answer :class:`Rate` steps. ``keys`` name the items in the caller's
    job (integers or strings, e.g. row indices or ids; default: their positions ``0..n-1``), and seed each item
    with :func:`~grm.seeding.item_seed` of ``options.seed`` and its key. Items with the same key and content get
    the same result.
    """

    def __init__(
        self,
        items: Iterable[Item | Mapping[str, Any] | Sequence[Any]],
        options: ScoringOptions,
        *,
        prompt: Callable[[Item, Sequence[int]], list[Message]],
        score_range: tuple[int, int],
        max_new_tokens: int,
        max_retries: int,
        rated: bool = False,
        keys: Sequence[int | str] | None = None,
    ) -> None:
        check_meta_rm(options, rated)
        self.options, self.prompt, self.score_range, self.rated = options, prompt, score_range, rated
        coerced = [Item.coerce(it) for it in items]
        keys = range(len(coerced)) if keys is None else _checked_keys(keys, len(coerced))
        k = options.k
        default_temperature = 0.0 if k == 1 else SAMPLING_TEMPERATURE
        self.temperature = default_temperature if options.temperature is None else options.temperature
        self.max_new_tokens = options.max_new_tokens or max_new_tokens
        self.max_retries = max_retries if options.max_retries is None else options.max_retries
        self.seed = random_seed() if options.seed is None else options.seed
        self.states: list[_ItemState] = []
        for item, key in zip(coerced, keys):
            seed = item_seed(self.seed, key)
            rng = seeded_rng(seed)
            n = len(item.responses)
            orders = [_shuffled(n, rng) if options.shuffle else list(range(n)) for _ in range(k)]
            self.states.append(_ItemState(item, seed, rng, orders, [None] * k))

    def steps(self) -> Generator[Step, Any, list[Reward]]:
        """The whole scoring: draw in rounds, rate, vote; returns one reward per item."""
        yield from self.rounds()
        meta = yield from self.rate()
        return self.vote(meta)

    # -- stages

    def rounds(self) -> Generator[Step, Any, None]:
        """Draw every item's samples: all k in one round, or with ``adaptive`` ``adaptive_round`` per round for the
        items whose best response is not yet decided. A backend outage after the first round ends the drawing and
        keeps what was drawn."""
        active = list(range(len(self.states)))
        for round_index in itertools.count():
            answered = yield from self.draw(self._open_round(active), round_index)
            active = self._undecided(active) if answered else []
            if not active:
                break
        for s in self.states:
            del s.judgements[s.drawn :]

    def draw(self, pending: list[tuple[int, int]], round_index: int) -> Generator[Step, Any, bool]:
        """Draw the ``pending`` (item, sample) slots, then retry those left unreadable; False when the backend
        stopped answering."""
        if not (yield from self._generate(pending, round_index, attempt=0)):
            return False
        return (yield from self.retry(self._unreadable(pending), round_index))

    def retry(self, pending: list[tuple[int, int]], round_index: int) -> Generator[Step, Any, bool]:
        """Resample unreadable judgements, up to ``max_retries`` times, at a temperature of at least 0.5 (a greedy
        retry would repeat itself); each resample counts in its item's ``Reward.n_retries``."""
        for attempt in range(1, self.max_retries + 1):
            if not pending:
                break
            if not (yield from self._generate(pending, round_index, attempt)):
                return False
            for i, _ in pending:
                self.states[i].n_retries += 1
            pending = self._unreadable(pending)
        return True

    def rate(self) -> Generator[Step, Any, list[Sequence[float] | None]]:
        """With a meta RM: one step rating every item's judgements; the ratings (None per item without one)."""
        if not self.rated:
            return [None] * len(self.states)
        entries = [(s.item.query, s.item.responses, s.judgements) for s in self.states]
        meta = list((yield Rate(entries)))  # type: ignore[arg-type]
        if len(meta) != len(entries) or any(len(m) != s.drawn for m, s in zip(meta, self.states)):
            raise RuntimeError(
                f"meta_rm.score_batch must return {self.options.k} scores for each of the {len(entries)} items"
            )
        return meta

    def vote(self, meta: Sequence[Sequence[float] | None]) -> list[Reward]:
        """Each item's reward: the sum of its valid judgements' scores (the ``k_meta`` rated highest with a meta
        RM), ties for best broken at random from the item's seeded stream."""
        rewards = []
        for i, (s, m) in enumerate(zip(self.states, meta)):
            judgements: list[Judgement] = s.judgements  # type: ignore[assignment]  # all drawn now
            v = voting.vote(judgements, len(s.item.responses), rng=s.rng, meta_scores=m, k_meta=self.options.k_meta)
            n_valid = sum(j.valid for j in judgements)
            if n_valid < len(judgements):
                logger.debug("item %d: %d of %d judgements invalid", i, len(judgements) - n_valid, len(judgements))
            rewards.append(
                Reward(
                    rewards=v.rewards,
                    best=v.best,
                    judgements=judgements,
                    n_valid=n_valid,
                    mean=v.mean,
                    kept=v.kept,
                    meta_scores=m,  # type: ignore[arg-type]
                    n_retries=s.n_retries,
                )
            )
        return rewards

    # -- helpers

    def _open_round(self, active: list[int]) -> list[tuple[int, int]]:
        """The (item, sample) slots the next round draws for the ``active`` items, marked drawn."""
        size = min(self.options.k, self.options.adaptive_round) if self.options.adaptive else self.options.k
        pending = []
        for i in active:
            s = self.states[i]
            end = min(self.options.k, s.drawn + size)
            pending += [(i, j) for j in range(s.drawn, end)]
            s.drawn = end
        return pending

    def _undecided(self, active: list[int]) -> list[int]:
        """The ``active`` items with samples left to draw whose leader could still be overtaken."""
        spread = self.score_range[1] - self.score_range[0]
        return [
            i
            for i in active
            if (s := self.states[i]).drawn < self.options.k
            and not voting.leader_is_safe(
                s.judgements[: s.drawn], len(s.item.responses), self.options.k - s.drawn, spread
            )
        ]

    def _unreadable(self, pending: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(i, j) for i, j in pending if not self.states[i].judgements[j].valid]  # type: ignore[union-attr]

    def _generate(self, pending: list[tuple[int, int]], round_index: int, attempt: int) -> Generator[Step, Any, bool]:
        """One generation call for the ``pending`` slots, its completions read into them. On a backend outage:
        re-raised if nothing was drawn yet, else False (a round's first draw then counts as never made).

        The request for an item's samples ``j, ...`` (those that drew one order) is seeded from the item's seed,
        the call and ``j * k``: its samples get the engine seeds ``seed, seed + 1, ...``, which no other request
        of the item shares, and which depend on nothing outside the item."""
        groups: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        for i, j in pending:
            groups.setdefault((i, tuple(self.states[i].orders[j])), []).append(j)
        call = generation_call(round_index, attempt, self.max_retries)
        temperature = self.temperature if attempt == 0 else max(self.temperature, SAMPLING_TEMPERATURE)
        requests = []
        for (i, order), samples in groups.items():
            seed = None if temperature == 0 else request_seed(self.states[i].seed, call, samples[0] * self.options.k)
            sampling = Sampling(temperature, self.max_new_tokens, seed=seed)
            requests.append(GenerationRequest(self.prompt(self.states[i].item, order), len(samples), sampling))
        try:
            outputs = yield Generate(requests)
        except BackendUnavailableError as e:
            if call == 0:
                raise
            logger.warning("drawing %d more judgements stopped, keeping those drawn: %s", len(pending), e)
            if attempt == 0:
                for i, j in pending:
                    self.states[i].drawn = min(self.states[i].drawn, j)
            return False
        if len(outputs) != len(requests):
            raise RuntimeError(f"backend returned {len(outputs)} results for {len(requests)} requests")
        for ((i, order), samples), completions in zip(groups.items(), outputs):
            if len(completions) != len(samples):
                raise RuntimeError(f"backend returned {len(completions)} completions where n={len(samples)}")
            for j, completion in zip(samples, completions):
                self.states[i].judgements[j] = read_judgement(completion, order, self.score_range)
        return True


def _checked_keys(keys: Sequence[int | str], n: int) -> list[int | str]:
    """``keys`` as a list, one per item (each key is checked by :func:`~grm.seeding.item_seed`)."""
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise TypeError(f"keys must be a sequence of one integer or string per item, got {type(keys).__name__}")
    keys = list(keys)
    if len(keys) != n:
        raise ValueError(f"keys must give one key per item: {n} items, {len(keys)} keys")
    return keys


def _shuffled(n: int, rng: random.Random) -> list[int]:
    order = list(range(n))
    rng.shuffle(order)
    return order


# ---------------------------------------------------------------------------------------------------- the driver


async def drive(steps: Generator[Step, Any, T], execute: Callable[[Step], Awaitable[Any]]) -> T:
    """Carry out a plan's ``steps`` with ``execute`` and return the plan's result. An error raised by ``execute``
    is thrown into the plan, which keeps what it has (a backend outage after the first round) or re-raises."""
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            step = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        try:
            reply, error = await execute(step), None
        except Exception as e:  # handed to the plan
            reply, error = None, e


def run_blocking(steps: Generator[Step, Any, T], execute: Callable[[Step], Any]) -> T:
    """:func:`drive` with a blocking ``execute``, in the calling thread and without an event loop: the driver then
    never waits on anything, so one ``send`` runs it to the end."""

    async def at_once(step: Step) -> Any:
        return execute(step)

    driver = drive(steps, at_once)
    try:
        driver.send(None)
    except StopIteration as done:
        return done.value
    driver.close()
    raise RuntimeError("the scoring driver was suspended by a blocking executor")
