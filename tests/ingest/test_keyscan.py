"""keyscan.candidates finds, without parsing, every key the body parser could take: the
property the early refusal of unauthenticated bodies rests on."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ingest.body import parse_pairs
from gateway.ingest.keyscan import MAX_CANDIDATES, MAX_OCCURRENCES, TooManyKeys, candidates

keys = st.text(min_size=1, max_size=80).filter(lambda k: k.strip() == k)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=12,
)


@given(key=keys, name=st.sampled_from(["accessKey", "access_token"]),
       other=st.dictionaries(st.text(max_size=12), json_values, max_size=4),
       indent=st.booleans())
def test_a_json_bodys_top_level_key_is_always_a_candidate(
    key: str, name: str, other: dict[str, Any], indent: bool
) -> None:
    body = {**{k: v for k, v in other.items() if k not in ("accessKey", "access_token")},
            name: key}
    option = orjson.OPT_INDENT_2 if indent else 0
    assert key in candidates(orjson.dumps(body, option=option), json=True)


@given(key=keys, other=st.dictionaries(st.text(min_size=1, max_size=12),
                                        st.text(max_size=30), max_size=4))
def test_a_form_bodys_key_is_always_a_candidate(key: str, other: dict[str, str]) -> None:
    fields = {**{k: v for k, v in other.items() if k not in ("accessKey", "access_token")},
              "access_token": key}
    body = urlencode(fields)
    assert parse_pairs(body, "body")["access_token"] == key  # what the parser takes
    assert key in candidates(body.encode(), json=False)


def test_nothing_named_like_a_key_gives_no_candidates() -> None:
    body = b'{"data": [{"event_source_url": "https://x.example/?a=1&access_token=1"}]}'
    assert candidates(body, json=True) == []  # a form-shaped text inside a JSON value
    assert candidates(b'{"data": [{"event_name": "accessKey"}]}', json=True) == []
    assert candidates(b'{"accessKey": ""}', json=True) == []
    assert candidates(b"data=%5B%5D&my_access_token=abc", json=False) == []


def test_escaped_key_values_are_decoded() -> None:
    assert candidates(b'{"accessKey": "a\\"b\\u00e9"}', json=True) == ['a"b\u00e9']


def test_a_body_naming_too_many_keys_is_refused() -> None:
    body = orjson.dumps({"data": [{"accessKey": str(n)} for n in range(MAX_CANDIDATES + 1)]})
    with pytest.raises(TooManyKeys):
        candidates(body, json=True)


def test_a_body_stuffed_with_the_name_is_refused_after_a_few_looks() -> None:
    """Each occurrence costs a Python step: a body full of the name must not cost thousands."""
    body = b'{"data": "' + b"accessKey " * 100_000 + b'", "accessKey": "k"}'
    with pytest.raises(TooManyKeys):
        candidates(body, json=True)
    assert candidates(b"accessKey " * MAX_OCCURRENCES, json=True) == []
