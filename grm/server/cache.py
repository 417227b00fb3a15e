"""Identical requests judged once: RL frameworks retry a reward call that timed out, and the retry must not double
the work.

An item is identified by its content (conversation, responses, principles, reference), the scoring options (seed
included) and its seeding key, so two identical seeded items would get the same Reward anyway. While one is being
scored, an identical one waits for the same result; once scored, it is answered from the cache for ``ttl_s``
seconds (at most ``size`` results are kept, the oldest dropped first). Unseeded items (a fresh seed each) and
failures are never cached. When every caller waiting for an item has left, the item leaves the queue if no engine
call has taken it yet; one already taken is finished, so that the retry that usually follows gets it at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from grm.scoring import ScoringOptions
from grm.server.batcher import FairBatcher
from grm.types import Item, Reward


@dataclass(eq=False)
class _Entry:
    name: str
    future: asyncio.Future = field(repr=False)
    waiters: int = 0
    expires: float = float("inf")


class ResultCache:
    """Scores items through ``batcher``, each identical item once (see the module docs); ``size=0`` turns it off."""

    def __init__(self, batcher: FairBatcher, size: int, ttl_s: float) -> None:
        self.batcher, self.size, self.ttl_s = batcher, size, ttl_s
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.hits = self.misses = 0

    def counters(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries)}

    async def score(
        self, items: Sequence[Item], options: ScoringOptions, keys: Sequence[int | str] | None = None
    ) -> list[Reward]:
        """One Reward per item, as ``batcher.submit(items, options, keys)`` gives."""
        keys = list(range(len(items))) if keys is None else list(keys)
        if not self.size or options.seed is None:
            return await self.batcher.submit(items, options, keys)
        self._expire()
        names = [self._name(item, options, key) for item, key in zip(items, keys)]
        entries, new = [], []
        for name, item, key in zip(names, items, keys):
            entry = self._entries.get(name)
            if entry is None:
                entry = self._entries[name] = _Entry(name, asyncio.get_running_loop().create_future())
                new.append((entry, item, key))
                self.misses += 1
            else:
                self.hits += 1
            entry.waiters += 1
            entries.append(entry)
        if new:
            futures = self.batcher.enqueue([i for _, i, _ in new], options, [k for _, _, k in new])
            for (entry, _, _), future in zip(new, futures):
                entry.future = future
                future.add_done_callback(lambda f, e=entry: self._settled(e, f))
        try:
            return list(await asyncio.gather(*(asyncio.shield(e.future) for e in entries)))
        except asyncio.CancelledError:
            for entry in entries:
                if entry.waiters == 1 and self.batcher.withdraw(entry.future):  # the last caller left: unqueued
                    self._forget(entry)
            raise
        finally:
            for entry in entries:
                entry.waiters -= 1
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def _settled(self, entry: _Entry, future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is not None:
            self._forget(entry)
        else:
            entry.expires = time.monotonic() + self.ttl_s

    def _forget(self, entry: _Entry) -> None:
        if self._entries.get(entry.name) is entry:
            del self._entries[entry.name]

    def _expire(self) -> None:
        now = time.monotonic()
        for name in [n for n, e in self._entries.items() if e.expires < now]:
            del self._entries[name]

    @staticmethod
    def _name(item: Item, options: ScoringOptions, key: int | str) -> str:
        return json.dumps([asdict(item), asdict(options), key], sort_keys=True, ensure_ascii=False)
