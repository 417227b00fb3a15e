"""Reading a request: its body, its fields and its options, checked before it joins a batch.

Everything here is plain, synchronous and free of HTTP, so that the server runs it in a worker thread and tests call
it directly. A request that fails a check raises :class:`BadRequest` naming the field and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grm.integrations.groups import min_responses
from grm.jsonl import plain_id
from grm.model import GRM
from grm.scoring import ScoringOptions, check_meta_rm
from grm.server.config import ServerConfig
from grm.types import Item

OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(ScoringOptions) if f.name != "budget")
"""Request fields taken as scoring options (see :class:`grm.ScoringOptions`), on every scoring endpoint.
``budget`` is not one: a batch mixes requests, so a budget would be shared with other clients' items."""
SCORE_FIELDS = ("query", "responses", "principles", "reference", "id")


class BadRequest(ValueError):
    """A request the server refuses with ``status`` (400 unless given) and this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON")


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body's JSON object: standard JSON only (no NaN or Infinity), an object at the top, its text valid
    Unicode (JSON's ``\\ud800`` escapes can write a lone surrogate, which no engine can encode)."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest("body is not readable: JSON nested too deeply") from None
    except ValueError as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object, got {type(body).__name__}")
    if _SURROGATE_ESCAPE.search(raw):  # pairs are fine; look for a lone one only when an escape is there
        _refuse_lone_surrogates(body, "body")
    return body


def _refuse_lone_surrogates(value: Any, where: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadRequest(
                f"{where} holds a lone surrogate ({value[e.start]!a}) at character {e.start}: not valid Unicode text"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_lone_surrogates(key, f"a key of {where}")
            _refuse_lone_surrogates(item, f"{where}.{key}" if where != "body" else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_lone_surrogates(item, f"{where}[{i}]")


def request_defaults(options: ScoringOptions) -> dict[str, Any]:
    """The fields of ``options`` (the server's scoring flags) that differ from :class:`ScoringOptions`' defaults,
    as :attr:`ServerConfig.default_options`: ``k`` and ``seed`` have settings of their own, ``budget`` is not taken."""
    default = ScoringOptions()
    return {
        name: getattr(options, name)
        for name in OPTION_FIELDS
        if name not in ("k", "seed") and getattr(options, name) != getattr(default, name)
    }


def scoring_options(body: dict[str, Any], config: ServerConfig, rated: bool) -> ScoringOptions:
    """The scoring options a request body asks for (``k`` defaults to ``config.default_k``, the others to
    ``config.default_options``), within the server's limits; :class:`BadRequest` naming the field otherwise.
    ``rated``: the server votes with a meta RM."""
    if body.get("budget") is not None:
        raise BadRequest(
            "budget is not taken here: the server batches requests together, so a budget would be shared with "
            "other clients' items; send adaptive (and risk) to spend fewer judgements on clear items"
        )
    given = {name: body[name] for name in OPTION_FIELDS if body.get(name) is not None}
    for name, value in given.items():
        if isinstance(value, list | dict):
            raise BadRequest(f"{name} must be a single value, got a JSON {type(value).__name__}")
    given = {**config.default_options, **given}
    given.setdefault("k", config.default_k)
    try:
        options = ScoringOptions(**given)
        check_meta_rm(options, rated)
    except (TypeError, ValueError) as e:
        hint = " (this server has no meta RM)" if "k_meta" in str(e) and not rated else ""
        raise BadRequest(f"{e}{hint}") from e
    limits = {
        "k": (1, config.max_k),
        "max_new_tokens": (1, config.max_new_tokens),
        "max_retries": (0, config.max_retries),
    }
    for name, (low, high) in limits.items():
        value = getattr(options, name)
        if value is not None and value > high:
            raise BadRequest(f"{name} must be an integer in {low}..{high} on this server, got {value}")
    if options.seed is not None and not -(2**63) <= options.seed < 2**63:
        raise BadRequest(f"seed must fit in 64 bits, got {options.seed}")
    return options


def refuse_unknown(body: dict[str, Any], path: str, fields: Sequence[str]) -> None:
    """:class:`BadRequest` for fields ``path`` does not take (its ``fields`` and the scoring options)."""
    unknown = sorted(set(body) - set(fields) - set(OPTION_FIELDS) - {"budget"})
    if unknown:
        raise BadRequest(
            f"unknown field(s) {unknown} for {path}; it takes {', '.join(fields)} and the scoring options "
            f"{', '.join(OPTION_FIELDS)}"
        )


def checked_item(
    rm: GRM, config: ServerConfig, query: Any, responses: Any, *, sample: bool = False, **extra: Any
) -> Item:
    """A request's item, validated and checked to render (a custom template may refuse some inputs). It must hold
    as many responses as the judge shows at once (two for a pairwise judge, :func:`min_responses`), unless it is an
    RL ``sample``, judged with the other samples of its group: that one is rendered shown as often as needed."""
    if isinstance(responses, list) and len(responses) > config.max_responses:
        raise BadRequest(f"at most {config.max_responses} responses per request, got {len(responses)}")
    try:
        item = Item.coerce({"query": query, "responses": responses, **extra})
    except (TypeError, ValueError) as e:
        raise BadRequest(str(e)) from e
    least, shown = min_responses(rm.judge), item.responses
    if len(shown) < least and not sample:
        raise BadRequest(
            f"the {rm.judge.name!r} judge compares two responses at a time: it needs at least {least} responses, "
            f"got {len(shown)}; send two or more, or serve a judge that scores a response alone (e.g. --judge spct)"
        )
    try:
        rm.build_prompt(
            item.query,
            shown if len(shown) >= least else shown * least,
            principles=item.principles,
            reference=item.reference,
        )
    except (TypeError, ValueError) as e:
        raise BadRequest(str(e)) from e
    return item


@dataclass(frozen=True)
class ScoreRequest:
    """A ``/score`` request, read: its item, its options and the ``id`` to send back (``has_id``: it sent one)."""

    item: Item
    options: ScoringOptions
    id: Any = None
    has_id: bool = False


def score_request(rm: GRM, config: ServerConfig, body: dict[str, Any], rated: bool) -> ScoreRequest:
    """A ``/score`` body read: ``{"query", "responses", "principles"?, "reference"?, "id"?}`` plus options."""
    refuse_unknown(body, "/score", SCORE_FIELDS)
    missing = [name for name in ("query", "responses") if name not in body]
    if missing:
        raise BadRequest(f"/score needs 'query' and 'responses'; missing {missing}")
    if not plain_id(body.get("id")):
        raise BadRequest(f"id must be a string, a number or null, got a JSON {type(body['id']).__name__}")
    extra = {name: body[name] for name in ("principles", "reference") if body.get(name) is not None}
    item = checked_item(rm, config, body["query"], body["responses"], **extra)
    return ScoreRequest(item, scoring_options(body, config, rated), body.get("id"), "id" in body)
