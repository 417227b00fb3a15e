"""Scoring a batch so that one item's failure stays that item's: what the CLI and the server score rows and
requests with."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from grm.backends import BackendUnavailableError
from grm.rows import RowItem, verdict
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


def score_rows(rm: Any, rows: Sequence[tuple[Any, str, RowItem]], **kwargs: Any) -> list[dict[str, Any]]:
    """``grm score``'s output rows for rows read as ``(index, where, parsed)`` (``where`` names the row in
    messages, e.g. ``line 7``): the readable ones scored together by :func:`score_isolated`, each under its
    ``index`` as key (``kwargs`` go to ``score_batch``), so a row's result does not depend on the rows scored with
    it; a row that could not be read or scored gets ``{"index", "id", "error"}``, its error naming the row."""
    readable = [(index, where, parsed) for index, where, parsed in rows if parsed.item is not None]
    results = iter(
        score_isolated(rm, [p.item for _, _, p in readable], keys=[i for i, _, _ in readable], **kwargs)
        if readable
        else []
    )
    out = []
    for index, where, parsed in rows:
        result = next(results) if parsed.item is not None else parsed.error
        if isinstance(result, Reward):
            row = {"index": index, "id": parsed.id, **result.to_dict()}
            out.append(row | verdict(result) if parsed.shape == "pair" else row)
        else:
            error = result if isinstance(result, str) else f"{where}: scoring failed: {type(result).__name__}: {result}"
            out.append({"index": index, "id": parsed.id, "error": error})
    return out
