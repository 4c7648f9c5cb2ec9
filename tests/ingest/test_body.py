"""The hit parameters' parser: form decoding as urllib does it, with escaped names cached."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import HitError
from gateway.ingest import body
from gateway.ingest.body import parse_pairs

fields = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=6)


@given(fields)
def test_pairs_decode_as_urllib_does_the_second_time_too(params: dict[str, str]) -> None:
    text = urlencode(params)
    expected = dict(parse_qsl(text, keep_blank_values=True, errors="strict"))
    assert parse_pairs(text, "query string") == expected
    assert parse_pairs(text, "query string") == expected  # names now from the cache


def test_the_cache_of_escaped_names_is_bounded() -> None:
    for n in range(body._NAMES_KEPT + 100):
        assert parse_pairs(f"cd%5Bk{n}%5D=1", "query string") == {f"cd[k{n}]": "1"}
    assert len(body._NAMES) <= body._NAMES_KEPT


def test_a_name_that_is_not_utf8_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(HitError, match="not valid UTF-8"):
            parse_pairs("cd%5B%FF%5D=1", "query string")
