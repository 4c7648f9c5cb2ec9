"""Normalization and hashing of user_data: every vector in docs/meta-capi.md, the SDKs'
mistakes done right, pass-through of hashed values, and properties that must hold for any input."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.hashing import hash_user_data, hash_value, looks_hashed
from gateway.normalize import NORMALIZERS, normalize_phone


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Hashes Meta's docs give (docs/meta-capi.md).
@pytest.mark.parametrize(("key", "raw", "digest"), [
    ("em", "john_smith@gmail.com",
     "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
    ("ph", "16505551212", "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"),
    ("fn", "mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
    ("ln", "valéry", "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),
])
def test_meta_documented_hashes(key: str, raw: str, digest: str) -> None:
    assert hash_value(key, raw, None) == digest


# Normalized forms (docs/meta-capi.md), plus the forms SDKs get wrong.
@pytest.mark.parametrize(("key", "raw", "normalized"), [
    ("em", " Joe.Smith@Example.COM ", "joe.smith@example.com"),
    ("ph", "+1 (650) 555-1212", "16505551212"),
    ("ph", "001-650-555-1212", "16505551212"),
    ("ph", "+442071838750", "442071838750"),
    ("zp", "94025-1234", "94025"),
    ("zp", "SW1A 1AA", "sw1a1aa"),
    ("zp", "01234", "01234"),
    ("ct", "Menlo Park", "menlopark"),
    ("ct", "St. Louis", "stlouis"),
    ("ct", "Washington D.C", "washingtondc"),
    ("ct", "São Paulo", "são paulo".replace(" ", "")),
    ("country", " US ", "us"),
    ("country", "United States", "us"),
    ("country", "United Kingdom", "gb"),
    ("country", "DEU", "de"),
    ("ge", "Female", "f"),
    ("ge", "MALE", "m"),
    ("ge", "woman", "f"),
    ("st", "California", "ca"),
    ("st", "NEW YORK", "ny"),
    ("st", "TX", "tx"),
    ("st", "Ontario", "on"),
    ("db", "1990-02-28", "19900228"),
    ("db", "19900228", "19900228"),
    ("db", "02/28/1990", "19900228"),  # US month first
    ("db", "28.02.1990", "19900228"),  # day first when the month cannot be 28
    ("db", "1990/2/3", "19900203"),
    ("fn", "  Mary-Jane ", "maryjane"),
    ("fn", "VALÉRY", "valéry"),
    ("external_id", "  User-42 ", "user-42"),
])
def test_normalized_forms(key: str, raw: str, normalized: str) -> None:
    assert NORMALIZERS[key](raw) == normalized
    assert hash_value(key, raw, None) == sha(normalized)


def test_decomposed_accents_hash_like_composed_ones() -> None:
    assert hash_value("ln", "vale\u0301ry", None) == hash_value("ln", "valéry", None)


@pytest.mark.parametrize(("raw", "country", "normalized"), [
    ("(650) 555-1212", "us", "16505551212"),
    ("07911 123456", "gb", "447911123456"),
    ("020 7183 8750", "GB", "442071838750"),
    ("16505551212", "us", "16505551212"),
    ("+442071838750", "us", "442071838750"),  # already international: country ignored
    ("6505551212", None, "6505551212"),  # no country known: digits as given
])
def test_phone_gets_country_code_from_known_country(
    raw: str, country: str | None, normalized: str
) -> None:
    assert normalize_phone(raw, country) == normalized


@pytest.mark.parametrize(("key", "raw"), [
    ("em", "not-an-email"), ("ge", "x"), ("db", "1990-13-45"), ("db", "yesterday"),
    ("country", "Atlantis"), ("ph", "n/a"), ("fn", "---"),
])
def test_unusable_values_are_dropped_with_a_reason_naming_the_key(key: str, raw: str) -> None:
    hashed, problems = hash_user_data({key: raw, "client_ip_address": "1.2.3.4"})
    assert key not in hashed
    assert problems == [f"user_data.{key}: not a usable value (dropped)"]
    assert raw not in problems[0]


def test_hashed_values_pass_through_untouched() -> None:
    digest = sha("joe@example.com")
    hashed, problems = hash_user_data({
        "em": f"  {digest.upper()} ",
        "ph": f"{sha('16505551212')}.AQ",
        "fn": f"{sha('mary')}.Ab3_-xYz",
        "external_id": "0cc175b9c0f1b6a831c399e269772661",  # MD5
    })
    assert problems == []
    assert hashed == {
        "em": digest,
        "ph": f"{sha('16505551212')}.AQ",
        "fn": f"{sha('mary')}.Ab3_-xYz",
        "external_id": "0cc175b9c0f1b6a831c399e269772661",
    }


def test_lists_are_normalized_deduplicated_and_emptied_items_dropped() -> None:
    hashed, _ = hash_user_data({"em": ["A@B.co", " a@b.co ", "", sha("a@b.co")], "ph": [""]})
    assert hashed == {"em": [sha("a@b.co")]}


def test_clear_keys_are_left_alone() -> None:
    clear = {"client_ip_address": "2001:db8::1", "client_user_agent": "UA", "fbp": "fb.1.2.3",
             "fbc": "fb.1.2.IwAR", "lead_id": "123"}
    assert hash_user_data(clear) == (clear, [])


def test_phone_uses_the_events_own_country_first() -> None:
    hashed, _ = hash_user_data({"ph": "07911 123456", "country": "United Kingdom"},
                               default_country="us")
    assert hashed["ph"] == sha("447911123456")
    assert hashed["country"] == sha("gb")


def test_non_text_values_are_dropped_with_a_reason() -> None:
    hashed, problems = hash_user_data({"em": {"x": 1}, "zp": 94025})
    assert hashed == {"zp": sha("94025")}
    assert problems == ["user_data.em: must be text or a list of text (dropped)"]


HEX64 = re.compile(r"[a-f0-9]{64}")
keys = st.sampled_from(sorted(NORMALIZERS))


@given(key=keys, raw=st.text())
def test_hashing_never_raises_and_yields_a_hash_or_the_hashed_input(key: str, raw: str) -> None:
    result = hash_value(key, raw, "us")
    if result is not None:
        assert HEX64.fullmatch(result) or result == looks_hashed(raw)


@given(key=keys, raw=st.text())
def test_hashing_is_idempotent(key: str, raw: str) -> None:
    once = hash_value(key, raw, "gb")
    if once is not None:
        assert hash_value(key, once, "gb") == once


@given(key=keys, raw=st.text())
def test_normalizing_is_idempotent(key: str, raw: str) -> None:
    normalize = NORMALIZERS[key]
    once = normalize(raw)
    if once is not None and key not in ("ph",):
        assert normalize(once) == once


@given(st.dictionaries(st.text(max_size=12), st.one_of(
    st.text(), st.integers(), st.floats(), st.booleans(), st.none(),
    st.lists(st.text(), max_size=3),
)))
def test_hash_user_data_never_raises(user_data: dict[str, object]) -> None:
    hashed, problems = hash_user_data(user_data)
    assert set(hashed) <= set(user_data)
    assert all(isinstance(p, str) for p in problems)


def test_unknown_user_data_keys_are_dropped_so_nothing_leaks_unhashed() -> None:
    hashed, problems = hash_user_data({"email": "joe@example.com", "em": "joe@example.com",
                                       "favourite": "blue"})
    assert hashed == {"em": sha("joe@example.com")}
    assert problems == [
        "user_data.email: not a Conversions API key (did you mean 'em'?) (dropped)",
        "user_data.favourite: not a Conversions API key (dropped)",
    ]
