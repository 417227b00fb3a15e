"""Scoring a batch so that one item's failure stays that item's: what the CLI and the server score rows and
requests with."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from grm.backends import BackendUnavailableError
from grm.types import Item, Reward

logger = logging.getLogger(__name__)


def score_isolated(
    rm: Any, items: Sequence[Item], *, keys: Sequence[int | str] | None = None, **kwargs: Any
) -> list[Reward | Exception]:
    """``rm.score_batch(items, keys=keys, **kwargs)``, one reward per item; when the batch raises, each item is
    scored alone, under its own key (default: its position in ``items``), so it gets the reward the batch would
    have given it, and an item that still fails gets its exception in place of a reward, so the others are kept.

    :class:`~grm.backends.BackendUnavailableError` is raised as it is: the backend answers no one, so retrying
    item by item would only fail as many times.
    """
    keys = list(range(len(items))) if keys is None else list(keys)
    try:
        return list(rm.score_batch(items, keys=keys, **kwargs))
    except BackendUnavailableError:
        raise
    except Exception as e:
        if len(items) == 1:
            return [e]
        logger.warning(
            "scoring a batch of %d failed (%s: %s); scoring its items one by one", len(items), type(e).__name__, e
        )
    out: list[Reward | Exception] = []
    for item, key in zip(items, keys):
        try:
            out.append(rm.score_batch([item], keys=[key], **kwargs)[0])
        except BackendUnavailableError:
            raise
        except Exception as e:
            out.append(e)
    return out
