"""The scoring plan: how one ``score_batch`` call turns items into rewards, written once and without I/O.

A :class:`ScoringPlan` holds the whole algorithm as a generator of typed steps (:meth:`ScoringPlan.steps`): it
yields a :class:`Generate` (requests for the backend) or a :class:`Rate` (judgements for the meta RM), is sent
each step's reply (or thrown the error raised while getting it) and returns one :class:`~grm.types.Reward` per
item. :func:`drive` carries a plan out with an executor, the one function that performs a step: ``GRM.ascore_batch``
awaits it with an async executor, ``GRM.score_batch`` runs it with a blocking one through :func:`run_blocking`
(no event loop). The plan's stages:

1. **rounds**: all ``k`` samples of every item in one round, or with ``adaptive`` (or a ``budget``)
   ``adaptive_round`` at a time, an item leaving once its decision is made (its leader cannot be overtaken by the
   samples left, or with ``risk`` the estimated chance that it would be is at most ``risk``) or, with a
   ``budget``, the budget is spent (each round then goes to the items whose decision is least settled);
2. **draw**: a round's generation call, then **retry**: resample, up to ``max_retries`` times, the samples whose
   scores could not be read;
3. **rate**: with a meta RM, one step per round rating the judgements it drew;
4. **vote**: sum each response's scores over the (kept) valid judgements.

Every sample shows the responses in an order of its own; samples that drew the same order share one request
(``n=``), and :func:`read_judgement` maps the scores back to the caller's order. Everything random about an item
(its orders, its requests' engine seeds, its tie-breaks) derives from the item's own seed, made of the call's
seed and the item's key (:func:`~grm.seeding.item_seed`; the key defaults to the item's ``id``, else its position
in the call, and a caller scoring a job in chunks passes each item's row index or id), never from the other items:
with a backend whose samples depend only on their own seed, an item's reward is the same in any batch, chunk or
order.
:class:`ScoringOptions` holds the settings every scoring entry point takes and passes on whole.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import numbers
import random
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from grm import voting
from grm.backends import BackendUnavailableError, Completion, GenerationRequest, Sampling
from grm.judges import JudgeFormat, Reader
from grm.parsing import parse_judgement
from grm.seeding import item_seed, random_seed, request_seed, seeded_rng
from grm.thinking import split_thinking, strip_thinking
from grm.types import Item, Judgement, Message, Reward, replace_fields

logger = logging.getLogger(__name__)

SAMPLING_TEMPERATURE = 0.5
"""Temperature for k > 1 samples and for retries of failed samples (the paper samples at 0.5)."""

TOURNAMENTS = ("all-pairs", "knockout")
"""How a pairwise judge ranks more than two responses (:class:`ScoringOptions` ``tournament``)."""

LEAST_SETTLED = 0.1
"""With a budget, a round after the first serves the undecided items whose estimated risk is at least this share
of the highest one's."""

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
    - ``adaptive``: draw the samples in rounds of ``adaptive_round`` (one engine call per round for every
      undecided item) and stop an item once its decision is made: with ``risk=0`` (the default) once its leader
      cannot be overtaken by the samples left, so the best response is exactly fixed-k voting's; with
      ``0 < risk < 1`` also once the estimated probability that all k samples would pick another best is at most
      ``risk`` (:func:`grm.voting.decision_risk`: from the item's own score differences and their spread). With a
      meta RM the decision is made on the judgements it keeps. An item's samples depend on its own seed and
      samples only, so the result does not depend on the batch.
    - ``budget``: draw at most this many judgements in the whole call, resamples included: an integer, or a
      fraction in (0, 1] of ``k * len(items)``. Every item gets a first round (``adaptive_round`` samples, fewer
      if the budget is smaller), then each round goes to the undecided items whose decision is least settled
      (highest estimated risk), up to k each, until the budget is spent. Implies drawing in rounds. Unlike the
      rest, a budget is shared by the batch: an item's samples then depend on the others.
    - ``tournament``: how a pairwise judge (``grm.judges``, ``shows="two"``) ranks more than two responses:
      ``all-pairs`` (every pair, k samples each; a response's reward is its wins, a tie counting a half) or
      ``knockout`` (a seeded bracket, k samples per match, the winner of each match going on; fewer judgements,
      n - 1 matches; the best response is the champion). Other judges ignore it.
    - ``thinking_tokens``: room for a thinking judge's reasoning, added to ``max_new_tokens`` (the answer's room);
      a judgement cut off while thinking is unreadable ("truncated in thinking") and retried like any other.
    - ``strip_thinking``: before judging, remove each response's own thinking block and trailing chat special
      tokens (:func:`grm.thinking.strip_thinking`), for RL on a thinking policy whose rollouts keep them.

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
    risk: float = 0.0
    budget: int | float | None = None
    tournament: str = "all-pairs"
    thinking_tokens: int | None = None
    strip_thinking: bool = False

    def __post_init__(self) -> None:
        for name, low in (("k", 1), ("adaptive_round", 1)):
            _set_integer(self, name, low)
        for name, low in (
            ("seed", None),
            ("max_new_tokens", 1),
            ("max_retries", 0),
            ("k_meta", 1),
            ("thinking_tokens", 0),
        ):
            if getattr(self, name) is not None:
                _set_integer(self, name, low)
        if self.k_meta is not None and self.k_meta > self.k:
            raise ValueError(f"k_meta must be in 1..k={self.k}, got {self.k_meta}")
        for name in ("shuffle", "adaptive", "strip_thinking"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        t = self.temperature
        if t is not None and (isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 <= t < math.inf):
            raise ValueError(f"temperature must be a finite number >= 0 (or None for the default), got {t!r}")
        r = self.risk
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not 0 <= r < 1:
            raise ValueError(f"risk must be a number in [0, 1) (0: the exact rule), got {r!r}")
        object.__setattr__(self, "risk", float(r))
        if r > 0 and not self.in_rounds:
            raise ValueError("risk applies to adaptive scoring: set adaptive=True (or a budget)")
        if self.tournament not in TOURNAMENTS:
            raise ValueError(f"tournament must be one of {', '.join(TOURNAMENTS)}, got {self.tournament!r}")
        if self.tournament == "knockout" and self.in_rounds:
            raise ValueError("a knockout draws its rounds one after another: adaptive and budget do not apply to it")
        b = self.budget
        if isinstance(b, numbers.Integral) and not isinstance(b, bool):
            _set_integer(self, "budget", 1)
        elif b is not None and (isinstance(b, bool) or not isinstance(b, numbers.Real) or not 0 < b <= 1):
            raise ValueError(
                f"budget must be a whole number of judgements >= 1 or a fraction in (0, 1] of k * items, got {b!r}"
            )

    @property
    def in_rounds(self) -> bool:
        """Whether samples are drawn in rounds (``adaptive`` or a ``budget``)."""
        return self.adaptive or self.budget is not None

    def budget_for(self, n_items: int, judgements: int | None = None) -> int | None:
        """The most judgements a call scoring ``n_items`` items may draw (None: no budget); a fraction is of
        ``judgements`` (default ``k * n_items``; more when a judge sees part of an item per judgement). ValueError
        when it cannot give every item one."""
        if self.budget is None:
            return None
        full = self.k * n_items if judgements is None else judgements
        total = self.budget if isinstance(self.budget, int) else math.floor(self.budget * full)
        if total < n_items:
            raise ValueError(f"a budget of {self.budget} gives {total} judgements, fewer than one per item ({n_items})")
        return total

    def replace(self, **changes: Any) -> ScoringOptions:
        """A copy with ``changes`` applied (and validated); TypeError naming any option that does not exist."""
        return replace_fields(self, "scoring option", **changes)


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
    if options.tournament == "knockout" and rated:
        raise ValueError("a knockout decides each match as it goes, before a meta RM could choose; use all-pairs")


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


def read_judgement(
    completion: Completion,
    order: Sequence[int],
    score_range: tuple[int, int],
    *,
    n: int | None = None,
    read: Reader = parse_judgement,
) -> Judgement:
    """The judgement in ``completion``, generated for a prompt that showed the responses ``order`` (``order[p]`` is
    the caller's index of the response shown at position ``p``), with its scores in the caller's order: a list of
    ``n`` (default ``len(order)``) where a response the prompt did not show scores None.

    The completion's thinking (``<think>`` blocks, or the engine's separate reasoning; see :mod:`grm.thinking`) is
    kept on ``Judgement.thinking`` and never read: a judgement cut off before its thinking closed is an error
    ("truncated in thinking"), as unreadable as any other. The answer is read with ``read`` (a judge format's
    reader; default SPCT's :func:`~grm.parsing.parse_judgement`). A failed completion gives an invalid judgement
    that keeps the text and the error; so does one cut at the token limit before its verdict."""
    order = list(order)
    n = len(order) if n is None else n
    if completion.error:
        return Judgement(text=completion.text, order=order, error=completion.error, n_tokens=completion.n_tokens)
    truncated = completion.finish_reason == "length"
    try:  # never raises on model output; this guards against a backend handing over something other than text
        split = split_thinking(completion.text, completion.reasoning)
        if split.unfinished:
            cause = "cut off at the token limit" if truncated else "it ended"
            judgement = Judgement(text=completion.text, error=f"truncated in thinking: {cause} before </think>")
        else:
            judgement = read(split.answer, len(order), score_range, truncated=truncated)
            judgement.text = completion.text
        judgement.thinking = split.thinking
    except Exception as e:
        judgement = Judgement(text=str(completion.text), error=f"unreadable completion: {type(e).__name__}: {e}")
    judgement.order, judgement.n_tokens = order, completion.n_tokens
    if judgement.scores is not None:
        caller: list[float | None] = [None] * n
        for shown, index in enumerate(order):
            caller[index] = judgement.scores[shown]
        judgement.scores = caller
        if judgement.ranking is not None:
            judgement.ranking = [order[p] for p in judgement.ranking]
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
    """One item's progress: its seed and the random stream drawn from it, the response order of each of its
    judgements (k per unit: see :meth:`grm.judges.JudgeFormat.orders`) and how many units a sample has, the
    judgements drawn so far (None: not yet), how many are drawn, how many resamples it took, how many rounds it was
    given, the meta RM's ratings of its judgements so far, and the estimated risk of its current decision."""

    item: Item
    seed: int
    rng: random.Random
    orders: list[list[int]]
    units: int
    judgements: list[Judgement | None]
    groups: list[int] = dataclasses.field(default_factory=list)
    bracket: list[int] | None = None
    drawn: int = 0
    n_retries: int = 0
    rounds: int = 0
    meta: list[float] = dataclasses.field(default_factory=list)
    risk: float = 1.0


class ScoringPlan:
    """One ``score_batch`` call's scoring, without I/O: drive :meth:`steps` (see the module docs).

    ``prompt(item, order)`` gives the chat messages that show ``item``'s responses in ``order``; ``judge`` says
    which responses each judgement shows and reads its answers (default: SPCT's format); ``score_range`` is the
    model's; ``max_new_tokens`` and ``max_retries`` are the model's, used where ``options`` leave them
    unset; ``rated`` says that a meta RM will answer :class:`Rate` steps. ``keys`` name the items in the caller's
    job (integers or strings, e.g. row indices or ids; default: each item's ``id``, else its position), and seed
    each item with :func:`~grm.seeding.item_seed` of ``options.seed`` and its key. Items with the same key and
    content get the same result.
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
        judge: JudgeFormat | None = None,
        rated: bool = False,
        keys: Sequence[int | str] | None = None,
    ) -> None:
        from grm.judges import get_judge

        check_meta_rm(options, rated)
        self.options, self.prompt, self.score_range, self.rated = options, prompt, score_range, rated
        self.judge = judge if judge is not None else get_judge("spct")
        coerced = [Item.coerce(it) for it in items]
        if options.strip_thinking:
            coerced = [dataclasses.replace(it, responses=[strip_thinking(r) for r in it.responses]) for it in coerced]
        if keys is None:
            keys = [i if item.id is None else item.id for i, item in enumerate(coerced)]
        else:
            keys = _checked_keys(keys, len(coerced))
        k = options.k
        default_temperature = 0.0 if k == 1 else SAMPLING_TEMPERATURE
        self.temperature = default_temperature if options.temperature is None else options.temperature
        self.max_new_tokens = (options.max_new_tokens or max_new_tokens) + (options.thinking_tokens or 0)
        self.max_retries = max_retries if options.max_retries is None else options.max_retries
        self.seed = random_seed() if options.seed is None else options.seed
        self.k_meta = (options.k_meta or max(1, k // 2)) if rated else None
        self.spread = score_range[1] - score_range[0]
        self.states: list[_ItemState] = []
        for item, key in zip(coerced, keys):
            seed = item_seed(self.seed, key)
            rng = seeded_rng(seed)
            n = len(item.responses)
            if options.tournament == "knockout" and self.judge.shows == "two" and n > 2:
                bracket = rng.sample(range(n), n)
                pairs = [tuple(bracket[p : p + 2]) for p in range(0, n - 1, 2)]
                orders = self.judge.pair_orders(pairs, k, rng, options.shuffle)
                state = _ItemState(item, seed, rng, orders, len(pairs), [None] * len(orders), bracket=bracket)
            else:
                orders = self.judge.orders(n, k, rng, options.shuffle)
                state = _ItemState(item, seed, rng, orders, len(orders) // k, [None] * len(orders))
            state.groups = [j % state.units for j in range(len(state.orders))]
            self.states.append(state)
        self.budget = options.budget_for(len(self.states), sum(len(s.orders) for s in self.states))
        self.spent = 0

    def steps(self) -> Generator[Step, Any, list[Reward]]:
        """The whole scoring: draw (and rate) in rounds, vote; returns one reward per item."""
        yield from self.rounds()
        return self.vote()

    # -- stages

    def rounds(self) -> Generator[Step, Any, None]:
        """Draw every item's samples: all k in one round, or (``adaptive`` or ``budget``) ``adaptive_round`` per
        round for the undecided items, least settled first while a budget lasts; with a meta RM, rate each
        round's judgements. A backend outage after the first round ends the drawing and keeps what was drawn."""
        active = list(range(len(self.states)))
        for round_index in itertools.count():
            pending = self._open_round(active, first=round_index == 0)
            if not pending:
                break
            answered = yield from self.draw(pending, round_index)
            yield from self.rate(pending)
            active = self._undecided(active) + self._next_matches(active) if answered else []
        for s in self.states:
            del s.judgements[s.drawn :], s.groups[s.drawn :]

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
            if self.budget is not None:
                pending = pending[: self.budget - self.spent]
            if not pending:
                break
            if not (yield from self._generate(pending, round_index, attempt)):
                return False
            for i, _ in pending:
                self.states[i].n_retries += 1
            pending = self._unreadable(pending)
        return True

    def rate(self, pending: list[tuple[int, int]]) -> Generator[Step, Any, None]:
        """With a meta RM: one step rating the judgements drawn in ``pending`` (those a failed draw left undrawn
        are skipped); each item's ratings are appended to its ``meta``."""
        if not self.rated:
            return
        slots: dict[int, list[int]] = {}
        for i, j in pending:
            if j < self.states[i].drawn:
                slots.setdefault(i, []).append(j)
        if not slots:
            return
        entries = [
            (self.states[i].item.query, self.states[i].item.responses, [self.states[i].judgements[j] for j in js])
            for i, js in slots.items()
        ]
        meta = list((yield Rate(entries)))  # type: ignore[arg-type]
        if len(meta) != len(entries) or any(len(m) != len(js) for m, js in zip(meta, slots.values())):
            raise RuntimeError(
                f"meta_rm.score_batch must return one score per judgement for each of the {len(entries)} items"
            )
        for (i, _), m in zip(slots.items(), meta):
            self.states[i].meta += [float(x) for x in m]

    def vote(self) -> list[Reward]:
        """Each item's reward: the sum of its valid judgements' scores (with a meta RM, those it keeps: the
        ``k_meta`` rated highest, or the same share of fewer drawn, see :func:`grm.voting.kept_so_far`), ties for
        best broken at random from the item's seeded stream."""
        rewards = []
        for i, s in enumerate(self.states):
            judgements: list[Judgement] = s.judgements  # type: ignore[assignment]  # all drawn now
            meta = s.meta if self.rated else None
            samples = s.drawn // s.units
            k_meta = max(1, round(samples * self.k_meta / self.options.k)) if self.k_meta is not None else None
            v = voting.vote(
                judgements, len(s.item.responses), rng=s.rng, meta_scores=meta, k_meta=k_meta, groups=s.groups
            )
            if s.bracket is not None and v.rewards is not None:  # a knockout's best is its champion
                v.best = s.bracket[0]
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
                    meta_scores=meta,
                    n_retries=s.n_retries,
                    seed=self.seed,
                )
            )
        return rewards

    # -- helpers

    def _open_round(self, active: list[int], first: bool) -> list[tuple[int, int]]:
        """The (item, sample) slots the next round draws for the ``active`` items, marked drawn: up to
        ``adaptive_round`` each (all k without rounds). With a budget, the first round gives every item the same
        share of it, and each later round goes to the least settled items while it lasts: highest estimated risk
        first (then position), only those whose risk is at least :data:`LEAST_SETTLED` times the highest, so that
        items already nearly certain do not take samples a close item could use."""
        if not active:  # every item decided (with budget to spare)
            return []
        k = self.options.k
        rounds = min(k, self.options.adaptive_round) if self.options.in_rounds else None
        left = None if self.budget is None else self.budget - self.spent
        if left is not None:
            if first:
                rounds = min(rounds, left // sum(self.states[i].units for i in active))
            else:  # the least settled first, and only those within LEAST_SETTLED of the least settled one
                active = sorted(active, key=lambda i: (-self.states[i].risk, i))
                top = self.states[active[0]].risk
                active = [i for i in active if self.states[i].risk >= top * LEAST_SETTLED]
        pending = []
        for i in active:
            s = self.states[i]
            total = len(s.orders)
            size = total - s.drawn if rounds is None else rounds * s.units
            end = min(total, s.drawn + size, s.drawn + left) if left is not None else min(total, s.drawn + size)
            if end <= s.drawn:
                break
            pending += [(i, j) for j in range(s.drawn, end)]
            if left is not None:
                left -= end - s.drawn
            s.drawn = end
            s.rounds += 1
        return pending

    def _next_matches(self, active: list[int]) -> list[int]:
        """The knockout items among ``active`` with another round to play: each match just drawn is won by the
        response with the higher sum of its valid scores (a tie, or no valid judgement, by a seeded coin), the
        winners (and a bye) make the next bracket, and its matches are added to the item's judgements to draw."""
        out = []
        k = self.options.k
        for i in active:
            s = self.states[i]
            if s.bracket is None or len(s.bracket) < 2 or s.drawn < len(s.orders):
                continue
            start = len(s.orders) - s.units * k
            sums: dict[int, float] = {}
            for j in range(start, len(s.orders)):
                judgement = s.judgements[j]
                if judgement is not None and judgement.valid:
                    for r in s.orders[j]:
                        sums[r] = sums.get(r, 0.0) + (judgement.scores[r] or 0.0)  # type: ignore[index]
            winners = []
            for p in range(0, len(s.bracket) - 1, 2):
                a, b = s.bracket[p], s.bracket[p + 1]
                score_a, score_b = sums.get(a, 0.0), sums.get(b, 0.0)
                winners.append(a if score_a > score_b else b if score_b > score_a else s.rng.choice((a, b)))
            s.bracket = winners + s.bracket[len(s.bracket) - len(s.bracket) % 2 :]  # a bye goes on
            if len(s.bracket) < 2:
                continue
            pairs = [tuple(s.bracket[p : p + 2]) for p in range(0, len(s.bracket) - 1, 2)]
            first_group = max(s.groups) + 1
            s.units = len(pairs)
            s.orders += self.judge.pair_orders(pairs, k, s.rng, self.options.shuffle)
            s.groups += [first_group + j % s.units for j in range(s.units * k)]
            s.judgements += [None] * (s.units * k)
            out.append(i)
        return out

    def _undecided(self, active: list[int]) -> list[int]:
        """The ``active`` items with samples left to draw whose decision is not made (see :class:`ScoringOptions`
        ``adaptive`` and ``risk``); each item's estimated risk is kept for a budget's priorities."""
        if not self.options.in_rounds:
            return []
        out = []
        for i in active:
            s = self.states[i]
            if s.drawn >= len(s.orders) or self._decided(s):
                continue
            out.append(i)
        return out

    def _decided(self, s: _ItemState) -> bool:
        """Whether ``s``'s best response is decided: exactly (the leader of the judgements voted so far cannot be
        overtaken), or with ``risk`` > 0 probably (:func:`grm.voting.decision_risk` at most ``risk``). Sets
        ``s.risk``."""
        judgements: list[Judgement] = s.judgements[: s.drawn]  # type: ignore[assignment]
        n, k, total = len(s.item.responses), self.options.k, len(s.orders)
        if self.k_meta is None:
            votes, final = [voting.score_vector(j) for j in judgements], total
            exact = voting.leader_is_safe(judgements, n, total - s.drawn, self.spread)
        elif s.units > 1:  # the meta RM keeps the best of each unit: nothing is safe before all are drawn
            return False
        else:
            kept = voting.kept_so_far(s.meta, k, self.k_meta)
            votes, final = [voting.score_vector(judgements[j]) for j in kept], self.k_meta
            exact = voting.kept_leader_is_safe(judgements, s.meta, n, k=k, k_meta=self.k_meta, spread=self.spread)
        s.risk = 0.0 if exact else voting.decision_risk(votes, n, final, self.spread)
        return exact or s.risk <= self.options.risk and self.options.risk > 0

    def _unreadable(self, pending: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(i, j) for i, j in pending if not self.states[i].judgements[j].valid]  # type: ignore[union-attr]

    def _generate(self, pending: list[tuple[int, int]], round_index: int, attempt: int) -> Generator[Step, Any, bool]:
        """One generation call for the ``pending`` slots, its completions read into them. On a backend outage:
        re-raised if nothing was drawn yet, else False (a round's first draw then counts as never made).

        The request for an item's samples ``j, ...`` (those that drew one order) is seeded from the item's seed,
        the item's own call number (its round and attempt, not the batch's) and ``j`` times the item's number of
        judgements (k, or k per unit of a judge that sees part of an item at a time): its samples get the
        engine seeds ``seed, seed + 1, ...``, which no other request of the item shares, and which depend on
        nothing outside the item."""
        groups: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        for i, j in pending:
            groups.setdefault((i, tuple(self.states[i].orders[j])), []).append(j)
        temperature = self.temperature if attempt == 0 else max(self.temperature, SAMPLING_TEMPERATURE)
        requests = []
        for (i, order), samples in groups.items():
            call = generation_call(self.states[i].rounds - 1, attempt, self.max_retries)  # the item's own round
            index = samples[0] * len(self.states[i].orders)  # no two requests of the item share an engine seed
            seed = None if temperature == 0 else request_seed(self.states[i].seed, call, index)
            sampling = Sampling(temperature, self.max_new_tokens, seed=seed)
            requests.append(GenerationRequest(self.prompt(self.states[i].item, order), len(samples), sampling))
        try:
            outputs = yield Generate(requests)
        except BackendUnavailableError as e:
            if round_index == 0 and attempt == 0:
                raise
            logger.warning("drawing %d more judgements stopped, keeping those drawn: %s", len(pending), e)
            if attempt == 0:
                for i, j in pending:
                    self.states[i].drawn = min(self.states[i].drawn, j)
            return False
        if len(outputs) != len(requests):
            raise RuntimeError(f"backend returned {len(outputs)} results for {len(requests)} requests")
        self.spent += len(pending)
        for ((i, order), samples), completions in zip(groups.items(), outputs):
            if len(completions) != len(samples):
                raise RuntimeError(f"backend returned {len(completions)} completions where n={len(samples)}")
            for j, completion in zip(samples, completions):
                self.states[i].judgements[j] = read_judgement(
                    completion, order, self.score_range, n=len(self.states[i].item.responses), read=self.judge.read
                )
        return True


def _checked_keys(keys: Sequence[int | str], n: int) -> list[int | str]:
    """``keys`` as a list, one per item (each key is checked by :func:`~grm.seeding.item_seed`)."""
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise TypeError(f"keys must be a sequence of one integer or string per item, got {type(keys).__name__}")
    keys = list(keys)
    if len(keys) != n:
        raise ValueError(f"keys must give one key per item: {n} items, {len(keys)} keys")
    return keys


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
