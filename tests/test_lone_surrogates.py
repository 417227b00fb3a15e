"""Lone surrogates (JSON's "\\ud800"): text no engine can encode. The server refuses them as it reads a body
(tests/test_server_limits.py); this is the library's side, for the lead's normalizers (grm/types.py)."""

import pytest

from grm import Item


@pytest.mark.xfail(
    strict=True,
    reason="proposed: grm.types.normalize_responses/normalize_query/normalize_reference/normalize_principles refuse "
    "text that is not valid Unicode (str.encode('utf-8') fails), naming the field and the character",
)
def test_an_item_with_a_lone_surrogate_is_refused_naming_the_response():
    with pytest.raises(ValueError, match=r"response 1 .*surrogate"):
        Item.coerce({"query": "q", "responses": ["a", "b\ud800"]})
