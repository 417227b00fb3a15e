"""Groups put back together: per-sample reward calls of one prompt held until the group is complete, then judged
together, listwise.

RL frameworks that call a reward once per rollout (OpenRLHF, slime, verl's reward loop) throw away what makes a GRM
good in RL: one judgement putting a prompt's N responses on one scale, at a fraction of the tokens of N judgements.
A :class:`GroupBuffer` recovers it:

- **Holding.** A sample joins the open group of its key: the protocol's group id, else a digest of its conversation,
  its reference and the scoring options (:func:`group_key`). The group is released when ``size`` samples have
  arrived, or ``wait_s`` seconds after its first, so a missing member never stalls the others.
- **Judging.** A released group is judged listwise (:func:`group_plan`): its distinct responses, in a canonical
  order (sorted), in chunks of at most ``n_max`` (balanced, drawn from the group's key), each chunk one item keyed
  by the group's key and the chunk's place. Identical responses are judged once and share their reward. So the
  rewards depend on the group's content and the seed only, never on the order in which its samples arrived.
- **Retries.** A sample whose group was judged in the last ``retain_s`` seconds (at most ``retain`` groups are
  kept) and holds one of its responses gets that response's reward, judged no second time: a framework that retries
  on a timeout costs nothing more. A sample arriving while an identical one waits in an open group is a new member,
  unless that one's caller has left (a retry): then it takes its place. A sample arriving after its group was
  released on the time limit is judged alone at once.
- **Pairwise judges** (``shows="two"``, e.g. ``pairwise-verdict``) compare two responses at a time
  (:func:`min_responses`): a group holding one response, its samples all alike, shows it twice (the judge compares
  it with itself, and every sample gets the same reward), and a sample with no other response to be compared with
  (its group released on the time limit with it alone, a sample late for its group, a group of one) is refused with
  :class:`TooFewResponses` naming the judge, not judged.

The buffer knows nothing of HTTP: the reward server and in-process reward functions (verl's router recipe) both
use it, with a ``judge`` coroutine that scores items (``GRM.ascore_batch``, or the server's batcher).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field

from grm.integrations.shaping import Shaping
from grm.judges import JudgeFormat
from grm.scoring import ScoringOptions, chunks
from grm.seeding import seeded_rng
from grm.types import Item, Message, Reward

Judge = Callable[[list[Item], ScoringOptions, list[str]], Awaitable[Sequence[Reward]]]
"""``judge(items, options, keys)``: one Reward per item, each item seeded by ``options.seed`` and its key."""


@dataclass(frozen=True)
class Sample:
    """One rollout to reward: the conversation it answers, its response and a reference answer (a label)."""

    query: list[Message]
    response: str
    reference: str | None = None


@dataclass(frozen=True)
class SampleReward:
    """A sample's share of its group's judgement: ``reward`` is the Reward of the item that held its response, at
    ``index``; ``value`` its reward shaped within the group (None: unscored, under a shaping that keeps None);
    ``group_size`` the samples judged together in its group."""

    reward: Reward
    index: int
    value: float | None
    score: float | None
    """The voted mean mapped onto [0, 1] (:meth:`grm.Reward.normalized`), unshaped; None when unscored."""
    group_size: int


class TooFewResponses(ValueError):
    """A sample its judge cannot judge: the judge compares two responses at a time, and the sample has no other
    response of its prompt to be compared with."""


def min_responses(judge: JudgeFormat | None) -> int:
    """The fewest responses one judgement of ``judge`` shows: 2 for a judge that compares two at a time
    (``shows="two"``, the pairwise formats), else 1 (None: SPCT's format)."""
    return 2 if judge is not None and judge.shows == "two" else 1


def group_key(sample: Sample, options: ScoringOptions) -> str:
    """The key of the group a sample belongs to when its protocol names none: a digest of its conversation, its
    reference and the options (samples judged together must share all three)."""
    text = json.dumps([sample.query, sample.reference, asdict(options)], sort_keys=True, ensure_ascii=True)
    return "group:" + hashlib.sha256(text.encode()).hexdigest()[:24]


def sample_key(sample: Sample) -> str:
    """A sample's seeding key by its content (conversation, response, reference), for a sample judged alone: its
    reward then depends on what it is, not on where it was sent."""
    text = json.dumps([sample.query, sample.response, sample.reference], ensure_ascii=True)
    return "sample:" + hashlib.sha256(text.encode()).hexdigest()[:24]


def group_plan(
    query: list[Message], reference: str | None, responses: Sequence[str], key: str, n_max: int, least: int = 1
) -> list[tuple[Item, str, list[str]]]:
    """How a group is judged: (item, its key, the responses it holds) for each chunk of the group's distinct
    responses, sorted, in balanced chunks of at most ``n_max`` drawn from ``key`` (one chunk keyed ``key``).
    ``least``: the responses one item must show (:func:`min_responses`); a group of that many samples or more but
    fewer distinct responses (all alike) shows its response that many times."""
    distinct = sorted(set(responses))
    if len(distinct) < least <= len(responses):
        distinct = distinct * least
    parts = [list(range(len(distinct)))]
    if len(distinct) > n_max:
        parts = chunks(len(distinct), n_max, seeded_rng("group-chunks", key))
    out = []
    for c, part in enumerate(parts):
        texts = [distinct[i] for i in part]
        out.append((Item(query, texts, reference=reference), key if len(parts) == 1 else f"{key}/{c}", texts))
    return out


@dataclass(eq=False)
class _Member:
    response: str
    future: asyncio.Future = field(repr=False)
    waiters: int = 1


@dataclass(eq=False)
class _Group:
    key: str
    sample: Sample
    options: ScoringOptions
    members: list[_Member] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    timed_out: bool = False
    late: bool = False
    whole: bool = False
    """Sent together (:meth:`GroupBuffer.judge_group`), not held."""
    released_at: float = 0.0

    def member(self, response: str, *, left_only: bool) -> _Member | None:
        """A member with this response (one whose callers have all left, with ``left_only``)."""
        return next((m for m in self.members if m.response == response and (m.waiters == 0 or not left_only)), None)


class GroupBuffer:
    """Holds per-sample calls until their group is complete, judges groups listwise (see the module docs).

    ``size``: the samples of a group (0 or 1: per-sample calls are not held; each is judged at once, alone, and
    only :meth:`judge_group` judges groups). ``score_range``: the GRM's, for the [0, 1] scale; ``shaping`` is applied
    within each group. ``judge_format``: the GRM's judge format (None: SPCT's); with a pairwise one, a sample with
    no other response to be compared with gets :class:`TooFewResponses`, its message ending with ``advice`` (what
    the owner's user can change).
    """

    def __init__(
        self,
        judge: Judge,
        *,
        size: int,
        wait_s: float,
        n_max: int,
        score_range: tuple[int, int],
        shaping: Shaping | None = None,
        retain: int = 1024,
        retain_s: float = 600.0,
        judge_format: JudgeFormat | None = None,
        advice: str = "",
    ) -> None:
        if size < 0 or n_max < 1 or wait_s < 0 or retain < 0:
            raise ValueError(f"need size >= 0, n_max >= 1, wait_s >= 0, retain >= 0; got {size}, {n_max}, {wait_s}")
        self.judge, self.size, self.wait_s, self.n_max = judge, size, wait_s, n_max
        self.judge_format, self.least, self.advice = judge_format, min_responses(judge_format), advice
        self.score_range, self.shaping = score_range, shaping or Shaping()
        self.retain, self.retain_s = retain, retain_s
        self._open: dict[str, _Group] = {}
        self._released: OrderedDict[str, _Group] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        self.completed = self.timed_out = self.late = self.retried = 0

    def counters(self) -> dict[str, int]:
        """Groups waiting (and their samples), judged whole, released by the time limit; samples judged after their
        group (late) and retried samples answered from a judged group."""
        return {
            "waiting": len(self._open),
            "waiting_samples": sum(len(g.members) for g in self._open.values()),
            "completed": self.completed,
            "timed_out": self.timed_out,
            "late": self.late,
            "retried": self.retried,
        }

    async def reward(self, sample: Sample, options: ScoringOptions, group: str | None = None) -> SampleReward:
        """The reward of one sample, judged with its group (key ``group``, else :func:`group_key`)."""
        key = group if group is not None else group_key(sample, options)
        return await self._wait(self._join(key, sample, options))

    async def judge_group(
        self, samples: Sequence[Sample], options: ScoringOptions, group: str | None = None
    ) -> list[SampleReward]:
        """The rewards of samples that arrive together as one group (their conversation and reference are the first
        one's), judged at once, as the same samples held one by one would be."""
        if not samples:
            return []
        key = group if group is not None else group_key(samples[0], options)
        retained = self._retained(key)
        if retained is not None and all(retained.member(s.response, left_only=False) for s in samples):
            self.retried += len(samples)
            members = [retained.member(s.response, left_only=False) for s in samples]
            for m in members:
                m.waiters += 1  # type: ignore[union-attr]
        else:
            g = _Group(key, samples[0], options, whole=True)
            members = [self._add(g, s.response) for s in samples]
            self._release(g, timed_out=False)
        return list(await asyncio.gather(*(self._wait(m) for m in members)))  # type: ignore[arg-type]

    def _join(self, key: str, sample: Sample, options: ScoringOptions) -> _Member:
        g = self._open.get(key)
        if g is not None:
            member = g.member(sample.response, left_only=True)
            if member is not None:
                member.waiters += 1
                return member
            member = self._add(g, sample.response)
            if len(g.members) >= self.size:
                self._release(g, timed_out=False)
            return member
        retained = self._retained(key)
        if retained is not None and (member := retained.member(sample.response, left_only=False)) is not None:
            self.retried += 1
            member.waiters += 1
            return member
        g = _Group(key, sample, options)
        member = self._add(g, sample.response)
        if retained is not None and retained.timed_out:  # its group was judged without it: alone, at once
            self.late += 1
            g.late = True
            retained.members.append(member)  # where a retry of it will look
            self._release(g, timed_out=False, late=True)
        elif self.size <= 1:
            self._release(g, timed_out=False)
        else:
            self._open[key] = g
            g.timer = asyncio.get_running_loop().call_later(self.wait_s, self._release, g, True)
        return member

    @staticmethod
    def _add(g: _Group, response: str) -> _Member:
        member = _Member(response, asyncio.get_running_loop().create_future())
        g.members.append(member)
        return member

    def _retained(self, key: str) -> _Group | None:
        now = time.monotonic()
        while self._released and next(iter(self._released.values())).released_at < now - self.retain_s:
            self._released.popitem(last=False)
        return self._released.get(key)

    def _release(self, g: _Group, timed_out: bool, late: bool = False) -> None:
        """Judge ``g`` now (``late``: a sample whose group was judged without it, kept in that group's record)."""
        if self._open.get(g.key) is g:
            del self._open[g.key]
        if g.timer is not None:
            g.timer.cancel()
        g.timed_out, g.released_at = timed_out, time.monotonic()
        self.timed_out += timed_out
        self.completed += not (timed_out or late)
        if self.retain and not late:
            self._released[g.key] = g
            self._released.move_to_end(g.key)
            while len(self._released) > self.retain:
                self._released.popitem(last=False)
        task = asyncio.get_running_loop().create_task(self._judge(g))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(self, g: _Group) -> None:
        responses = [m.response for m in g.members]
        try:
            if len(responses) < self.least:
                raise TooFewResponses(self._too_few(g))
            plan = group_plan(g.sample.query, g.sample.reference, responses, g.key, self.n_max, self.least)
            rewards = await self.judge([item for item, _, _ in plan], g.options, [key for _, key, _ in plan])
        except Exception as e:  # every member's caller gets the error
            for m in g.members:
                if not m.future.done():
                    m.future.set_exception(e)
                    m.future.add_done_callback(_retrieve)
            self._released.pop(g.key, None)  # not a result to answer retries with
            return
        placed = {text: (reward, i) for (_, _, texts), reward in zip(plan, rewards) for i, text in enumerate(texts)}
        texts = list(placed)
        scores = [_normalized(placed[t][0], placed[t][1], self.score_range) for t in texts]
        values = dict(zip(texts, self.shaping.apply(scores, [len(t) for t in texts])))
        for m in g.members:
            reward, index = placed[m.response]
            result = SampleReward(reward, index, values[m.response], scores[texts.index(m.response)], len(g.members))
            if not m.future.done():
                m.future.set_result(result)

    def _too_few(self, g: _Group) -> str:
        """Why ``g``'s lone sample cannot be judged, for :class:`TooFewResponses`."""
        name = self.judge_format.name if self.judge_format is not None else "?"
        if g.late:
            why = "it arrived after its group had been judged without it (released on the time limit)"
        elif g.timed_out:
            why = f"its group was released after the {self.wait_s:g} s wait holding it alone, of the {self.size} due"
        elif g.whole:
            why = "it was sent as a group of one sample"
        else:
            why = "samples are not held in groups here (group size 0), so each would be judged alone"
        line = f"the {name!r} judge compares two responses at a time and needs at least two, but this sample has " + (
            f"no other response of its prompt to be compared with: {why}"
        )
        return f"{line}; {self.advice}" if self.advice else line

    async def _wait(self, member: _Member) -> SampleReward:
        try:
            return await asyncio.shield(member.future)
        finally:
            member.waiters -= 1

    async def drain(self) -> None:
        """Release every open group now and wait for all judging to end (a server shutting down)."""
        for g in list(self._open.values()):
            self._release(g, timed_out=True)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _normalized(reward: Reward, index: int, score_range: tuple[int, int]) -> float | None:
    values = reward.normalized(score_range)
    return None if values is None else values[index]


def _retrieve(future: asyncio.Future) -> None:
    """Mark a future's exception as seen (its caller may have left)."""
    if not future.cancelled():
        future.exception()
