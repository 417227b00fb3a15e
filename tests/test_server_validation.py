"""grm.server.validation without HTTP: a body read into items and options, each refusal naming the field."""

import pytest

from grm import GRM
from grm.integrations.chat import ChatMarkers
from grm.server import OPTION_FIELDS, BadRequest, ServerConfig
from grm.server.protocols import openrlhf_request
from grm.server.validation import parse_body, refuse_unknown, score_request, scoring_options
from helpers import ScriptedBackend, by_length, judge_by


def by_length_grm():
    backend = ScriptedBackend(judge_by(by_length))
    return GRM(backend), backend


def test_parse_body_takes_standard_json_objects_only():
    assert parse_body(b'{"query": "q"}') == {"query": "q"}
    for raw, message in [
        (b"[1]", "must be a JSON object, got list"),
        (b'{"k": NaN}', "NaN is not standard JSON"),
        (b"{", "not valid JSON"),
        (b"[" * 100_000, "nested too deeply"),
    ]:
        with pytest.raises(BadRequest, match=message) as e:
            parse_body(raw)
        assert e.value.status == 400


def test_scoring_options_within_the_server_limits():
    config = ServerConfig(max_k=4, default_k=2)
    assert scoring_options({}, config, rated=False).k == 2
    assert scoring_options({"k": 3, "seed": 5}, config, rated=False).seed == 5
    for body, message in [
        ({"k": 5}, "k must be an integer in 1..4 on this server"),
        ({"k": [1]}, "k must be a single value"),
        ({"k_meta": 1}, "this server has no meta RM"),
        ({"seed": 2**64}, "seed must fit in 64 bits"),
        ({"budget": 3}, "budget is not taken here"),
    ]:
        with pytest.raises(BadRequest, match=message):
            scoring_options(body, config, rated=False)


def test_the_unknown_field_error_lists_only_what_is_accepted():
    assert "budget" not in OPTION_FIELDS
    with pytest.raises(BadRequest) as e:
        refuse_unknown({"query": "q", "foo": 1}, "/score", ("query",))
    assert "unknown field(s) ['foo'] for /score" in str(e.value) and "budget" not in str(e.value)
    refuse_unknown({"query": "q", "budget": 1}, "/score", ("query",))  # refused with its own reason, not as unknown


def test_score_and_reward_requests_read_into_items_and_options():
    rm, _ = by_length_grm()
    config = ServerConfig(max_responses=2)
    request = score_request(rm, config, {"query": "q", "responses": ["a", "b"], "k": 2, "id": 7}, rated=False)
    assert request.item.responses == ["a", "b"] and request.options.k == 2 and (request.id, request.has_id) == (7, True)
    with pytest.raises(BadRequest, match="at most 2 responses"):
        score_request(rm, config, {"query": "q", "responses": ["a"] * 3}, rated=False)
    body = {"query": ["P: x", "P: yy"], "prompts": ["P:", "P:"], "labels": ["r", None]}
    request = openrlhf_request(rm, config, ChatMarkers(), body, rated=False)
    assert [(s.query[-1]["content"], s.response, s.reference) for s in request.samples] == [
        ("P:", " x", "r"),
        ("P:", " yy", None),
    ]
    assert request.options.k == 1 and not request.seeded


def test_a_lone_surrogate_is_refused_naming_where_it_is():
    with pytest.raises(BadRequest, match=r"responses\[1\] holds a lone surrogate \('\\ud800'\) at character 1"):
        parse_body(b'{"query": "q", "responses": ["a", "b\\ud800"]}')
    with pytest.raises(BadRequest, match=r"query\[0\].content holds a lone surrogate"):
        parse_body(b'{"query": [{"role": "user", "content": "\\udfff"}], "responses": ["a"]}')
    assert parse_body(b'{"query": "\\ud83d\\ude00"}') == {"query": "\U0001f600"}  # a pair is a character


def test_server_settings_are_checked_when_made():
    assert ServerConfig(group_size=8, failed_reward="min", seed=3).group_size == 8
    for bad, message in [
        ({"group_size": -1}, "group_size must be a whole number >= 0"),
        ({"n_max": 0}, "n_max must be a whole number >= 1"),
        ({"group_wait_s": float("nan")}, "group_wait_s must be a number >= 0"),
        ({"length_penalty": -0.1}, "length_penalty must be a number >= 0"),
        ({"failed_reward": "max"}, "failed_reward must be a number or 'min'"),
        ({"seed": "7"}, "seed must be a whole number or None"),
    ]:
        with pytest.raises(ValueError, match=message):
            ServerConfig(**bad)
