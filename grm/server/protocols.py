"""RL frameworks' reward protocols: their request bodies read into samples, their replies written.

- **OpenRLHF** (``openrlhf/utils/agent.py``, ``SingleTurnAgentExecutor._fetch_rewards_via_http``): ``POST
  {"query": [prompt + response], "prompts": [prompt], "labels": [label]}``, one sample per request in 2026 (the
  query decoded with the chat special tokens), read back as ``rewards``, ``scores`` and ``extra_logs``. Each query
  is de-templated (:func:`grm.integrations.chat.detemplate`) so the judge sees the conversation and the response.
- **slime** (``slime/rollout/rm_hub/__init__.py``, ``remote_rm``): ``POST {"prompt", "response", "label"}`` per
  sample, the reward picked from the JSON reply by ``--reward-key`` (here ``reward``). The group form ``{"samples":
  [{"prompt", "response", "label"}, ...]}`` carries a whole group (grm's ``--custom-rm-path`` function for
  ``--group-rm``). A prompt is chat messages, or text (de-templated as OpenRLHF's).

Labels are reference answers: a string, or null (an empty string means none). Everything here is plain and
synchronous; the service runs it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grm.integrations.chat import ChatMarkers, conversation, detemplate
from grm.integrations.groups import Sample, SampleReward
from grm.model import GRM
from grm.scoring import ScoringOptions
from grm.server.config import ServerConfig
from grm.server.validation import BadRequest, checked_item, refuse_unknown, scoring_options
from grm.types import Message, normalize_query

OPENRLHF_FIELDS = ("query", "prompts", "labels")
SAMPLE_FIELDS = ("prompt", "response", "label")
GROUP_FIELDS = ("samples",)


@dataclass(frozen=True)
class RLRequest:
    """An RL protocol's request, read: its samples, its options and whether it sent a seed of its own."""

    samples: list[Sample]
    options: ScoringOptions
    seeded: bool
    grouped: bool = False
    """The samples arrived together as one group (slime's group form)."""


def _label(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{where} must be a string or null, got {type(value).__name__}")
    return value or None


def _checked(rm: GRM, config: ServerConfig, query: list[Message], response: str, reference: str | None) -> Sample:
    item = checked_item(rm, config, query, [response], sample=True, reference=reference)
    return Sample(item.query, item.responses[0], item.reference)


def openrlhf_request(
    rm: GRM, config: ServerConfig, markers: ChatMarkers, body: dict[str, Any], rated: bool
) -> RLRequest:
    """OpenRLHF's ``/get_reward`` body read (see the module docs)."""
    refuse_unknown(body, "/get_reward", OPENRLHF_FIELDS)
    queries, prompts, labels = body.get("query"), body.get("prompts"), body.get("labels")
    if not isinstance(queries, list) or not isinstance(prompts, list) or len(queries) != len(prompts):
        raise BadRequest("/get_reward needs 'query' and 'prompts': lists of equal length (prompt + response, prompt)")
    if len(queries) > config.max_reward_items:
        raise BadRequest(f"at most {config.max_reward_items} items per /get_reward request, got {len(queries)}")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(queries)):
        raise BadRequest("'labels' must be a list as long as 'query'")
    samples = []
    for i, (q, p) in enumerate(zip(queries, prompts)):
        if not isinstance(q, str) or not isinstance(p, str):
            raise BadRequest(f"query {i} and prompt {i} must be strings")
        try:
            messages, response = detemplate(p, q, markers)
        except ValueError:
            raise BadRequest(
                f"query {i} does not start with its prompt (nor hold its end); send the prompt text the query begins "
                "with"
            ) from None
        reference = _label(labels[i] if labels is not None else None, f"labels[{i}]")
        samples.append(_checked(rm, config, messages, response, reference))
    options = scoring_options(body, config, rated)
    return RLRequest(samples, options, seeded=options.seed is not None)


def _sample(rm: GRM, config: ServerConfig, markers: ChatMarkers, body: Any, where: str) -> Sample:
    if not isinstance(body, dict):
        raise BadRequest(f"{where} must be a JSON object with 'prompt', 'response' and 'label'")
    unknown = sorted(set(body) - set(SAMPLE_FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown} in {where}; a sample takes {', '.join(SAMPLE_FIELDS)}")
    prompt, response = body.get("prompt"), body.get("response")
    if not isinstance(response, str):
        raise BadRequest(f"{where}: 'response' must be a string, got {type(response).__name__}")
    if isinstance(prompt, str):
        messages, opened = conversation(prompt, markers)
        response = opened + markers.strip_end(response)
    else:
        try:
            messages = normalize_query(prompt)
        except (TypeError, ValueError) as e:
            raise BadRequest(f"{where}: 'prompt' must be text or chat messages ending with a user turn: {e}") from e
    return _checked(rm, config, messages, response, _label(body.get("label"), f"{where}: 'label'"))


def sample_request(rm: GRM, config: ServerConfig, markers: ChatMarkers, body: dict[str, Any], rated: bool) -> RLRequest:
    """slime's body read: one sample ``{"prompt", "response", "label"}``, or a group ``{"samples": [...]}`` (whose
    samples must share their prompt and label), each with the scoring options beside."""
    if "samples" in body:
        refuse_unknown(body, "/reward", GROUP_FIELDS)
        given = body["samples"]
        if not isinstance(given, list) or not given:
            raise BadRequest("'samples' must be a non-empty list of {prompt, response, label} objects")
        if len(given) > config.max_responses:
            raise BadRequest(f"at most {config.max_responses} samples per group, got {len(given)}")
        samples = [_sample(rm, config, markers, s, f"samples[{i}]") for i, s in enumerate(given)]
        if any((s.query, s.reference) != (samples[0].query, samples[0].reference) for s in samples):
            raise BadRequest("the samples of a group must share their prompt and label")
        grouped = True
    else:
        refuse_unknown(body, "/reward", SAMPLE_FIELDS)
        fields = {name: body[name] for name in SAMPLE_FIELDS if name in body}
        samples, grouped = [_sample(rm, config, markers, fields, "the body")], False
    options = scoring_options(body, config, rated)
    return RLRequest(samples, options, seeded=options.seed is not None, grouped=grouped)


def extra_logs(results: Sequence[SampleReward]) -> dict[str, list[float]]:
    """Per sample: its valid judgements, the judgements drawn for the item that held it, its group's size."""
    return {
        "grm_n_valid": [float(r.reward.n_valid) for r in results],
        "grm_n_drawn": [float(r.reward.n_drawn) for r in results],
        "grm_group_size": [float(r.group_size) for r in results],
    }


def openrlhf_reply(results: Sequence[SampleReward], failed: float) -> dict[str, Any]:
    """``rewards`` (shaped), ``scores`` (the voted mean on [0, 1]) and ``extra_logs``; OpenRLHF takes no null, so an
    unscored sample gets ``failed`` in both (after any shaping)."""
    return {
        "rewards": [failed if r.value is None else r.value for r in results],
        "scores": [failed if r.score is None else r.score for r in results],
        "extra_logs": extra_logs(results),
    }


def sample_reply(result: SampleReward, failed: float) -> dict[str, Any]:
    """One sample's answer: ``reward`` (what slime's ``--reward-key reward`` reads), ``score`` (the unshaped mean on
    [0, 1], null when unscored), ``n_valid``, ``n_drawn`` and ``group_size``."""
    return {
        "reward": failed if result.value is None else result.value,
        "score": result.score,
        "n_valid": result.reward.n_valid,
        "n_drawn": result.reward.n_drawn,
        "group_size": result.group_size,
    }
