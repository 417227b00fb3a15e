"""Scoring a batch so that one item's failure stays that item's, and a fault of the process or its environment
stops the work instead of being recorded as items' failures: what ``grm score`` and the server score with."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from grm.backends import BackendUnavailableError
from grm.types import Item, Reward

logger = logging.getLogger(__name__)

ENGINE_FAULTS = frozenset(
    {
        "EngineDeadError",  # vLLM's engine process died
        "OutOfMemoryError",  # torch's CUDA out of memory
        "RayActorError",  # a Ray replica died (and its subclasses below)
        "ActorDiedError",
        "ActorUnavailableError",
        "WorkerCrashedError",
        "NodeDiedError",
        "ObjectLostError",
        "OwnerDiedError",
    }
)
"""Names of exception classes (or of a base class) raised when an engine, a device or a worker fails, whatever the
item: matched by name so that no engine has to be imported to recognise its faults."""


def environment_fault(error: BaseException) -> bool:
    """Whether ``error`` is a fault of the process or its environment rather than of the item being scored: an
    interrupt or exit (anything not an ``Exception``), an I/O error (``OSError``: a broken pipe, a full disk, a lost
    connection), ``MemoryError``, an unavailable backend, a dead engine or worker (:data:`ENGINE_FAULTS`), a CUDA
    error. Such an error says nothing about the item: scoring it again later may well succeed."""
    if not isinstance(error, Exception):
        return True
    if isinstance(error, OSError | MemoryError | BackendUnavailableError):
        return True
    if isinstance(error, RuntimeError) and str(error).startswith(("CUDA error", "CUDA out of memory")):
        return True
    return any(cls.__name__ in ENGINE_FAULTS for cls in type(error).__mro__)


def score_isolated(
    rm: Any, items: Sequence[Item], *, keys: Sequence[int | str] | None = None, **kwargs: Any
) -> list[Reward | Exception]:
    """``rm.score_batch(items, keys=keys, **kwargs)``, one reward per item; when the batch raises, each item is
    scored alone, under its own key (default: its position in ``items``), so it gets the reward the batch would
    have given it, and an item that still fails gets its exception in place of a reward, so the others are kept.

    A fault of the environment (:func:`environment_fault`: an unavailable backend, a broken pipe, memory, an
    interrupt, a dead engine) is raised as it is, from the batch or from any item: it is not the items' failure,
    and retrying item by item would only fail as many times.
    """
    keys = list(range(len(items))) if keys is None else list(keys)
    try:
        return list(rm.score_batch(items, keys=keys, **kwargs))
    except Exception as e:
        if environment_fault(e):
            raise
        if len(items) == 1:
            return [e]
        logger.warning(
            "scoring a batch of %d failed (%s: %s); scoring its items one by one", len(items), type(e).__name__, e
        )
    out: list[Reward | Exception] = []
    for item, key in zip(items, keys):
        try:
            out.append(rm.score_batch([item], keys=[key], **kwargs)[0])
        except Exception as e:
            if environment_fault(e):
                raise
            out.append(e)
    return out
