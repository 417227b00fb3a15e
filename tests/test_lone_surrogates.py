"""Lone surrogates (JSON's "\\ud800"): text no engine can encode. The server refuses them as it reads a body
(tests/test_server_limits.py); this is the library's side (grm.types' normalizers), for every caller."""

import pytest

from grm import Item


@pytest.mark.parametrize(
    ("item", "where"),
    [
        ({"query": "q", "responses": ["a", "b\ud800"]}, "response 1"),
        ({"query": "q\udfff", "responses": ["a"]}, "query"),
        ({"query": [{"role": "user", "content": "\ud800"}], "responses": ["a"]}, "query message 0"),
        ({"query": "q", "responses": ["a"], "principles": ["ok", "\ud800"]}, "principle 1"),
        ({"query": "q", "responses": ["a"], "reference": "x\ud800"}, "reference"),
    ],
)
def test_an_item_with_a_lone_surrogate_is_refused_naming_where(item, where):
    with pytest.raises(ValueError, match=rf"{where} holds a lone surrogate .* at character"):
        Item.coerce(item)
    assert Item.coerce({"query": "q", "responses": ["😀 ok"]}).responses == ["😀 ok"]  # a real pair is fine
