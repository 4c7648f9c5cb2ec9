"""Normalization and hashing of user_data: every vector in docs/meta-capi.md, the SDKs'
mistakes done right, pass-through of hashed values, and properties that must hold for any input."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.hashing import CLEAR_KEYS, HASHED_KEYS, hash_user_data, hash_value, looks_hashed
from gateway.normalize import NORMALIZERS, normalize_phone

ROOT = Path(__file__).resolve().parent.parent
SDK_VECTORS = ROOT / "tests" / "data" / "sdk-vectors"
VECTORS = json.loads((SDK_VECTORS / "vectors.json").read_text(encoding="utf-8"))


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


@pytest.mark.parametrize(("key", "raw"), [
    ("dobd", "-1"), ("dobd", "2b"), ("dobd", "001"), ("dobd", "00"), ("dobd", "32"),
    ("dobm", "-1"), ("dobm", "2b"), ("dobm", "001"), ("dobm", "May"), ("dobm", "13"),
    ("doby", "-1990"), ("doby", "1990a"), ("doby", "19900"), ("doby", "'90"),
])
def test_birth_day_month_and_year_are_never_guessed_from_garbage(key: str, raw: str) -> None:
    hashed, problems = hash_user_data({key: raw})
    assert hashed == {}
    assert problems == [f"user_data.{key}: not a usable value (dropped)"]


def wide(text: str) -> str:
    """The full-width form East Asian input methods type: `1` -> U+FF11, `A` -> U+FF21."""
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def arabic_indic(digits: str) -> str:
    return "".join(chr(0x0660 + int(ch)) for ch in digits)


# Values typed with full-width or other-script digits mean the same ASCII text; names and cities
# keep their letters (Meta: lowercase, UTF-8); identifiers are opaque and not folded.
@pytest.mark.parametrize(("key", "raw", "normalized"), [
    ("ph", wide("+1 (650) 555-1212"), "16505551212"),
    ("ph", arabic_indic("0016505551212"), "16505551212"),
    ("em", f" {wide('JOE@EXAMPLE.COM')} ", "joe@example.com"),
    ("zp", wide("12345"), "12345"),
    ("zp", wide("94025-1234"), "94025"),
    ("db", wide("1990-02-28"), "19900228"),
    ("doby", wide("1990"), "1990"),
    ("dobm", wide("02"), "02"),
    ("dobd", wide("28"), "28"),
    ("ge", wide("F"), "f"),
    ("country", wide("US"), "us"),
    ("st", wide("CA"), "ca"),
    ("fn", wide("JOE"), "joe"),
    ("fn", "日本", "日本"),
    ("fn", "अनिल", "अनिल"),  # the vowel sign is part of the name
    ("ct", "तिरुवनंतपुरम", "तिरुवनंतपुरम"),
    ("ln", "Müller", "müller"),
    ("ct", f"{wide('San')} José", "sanjosé"),
    ("external_id", wide("ABC-42"), wide("abc-42")),
])
def test_non_ascii_digits_and_letters_are_folded_where_the_meaning_is_plain(
    key: str, raw: str, normalized: str
) -> None:
    assert NORMALIZERS[key](raw) == normalized
    assert hash_value(key, raw, None) == sha(normalized)


def test_full_width_national_phone_gets_its_country_code() -> None:
    assert normalize_phone(wide("090-1234-5678"), "jp") == "819012345678"


@pytest.mark.parametrize(("key", "raw"), [
    ("zp", wide("123") + " \u0430\u0431\u0432"),  # postal codes are Latin letters and digits
    ("doby", "一九九〇"),  # numerals, not digits
    ("dobd", arabic_indic("32")),
    ("db", wide("1990") + "年" + wide("2") + "月" + wide("28") + "日"),
])
def test_non_ascii_values_without_a_plain_meaning_are_dropped(key: str, raw: str) -> None:
    hashed, problems = hash_user_data({key: raw})
    assert hashed == {}
    assert problems == [f"user_data.{key}: not a usable value (dropped)"]


@pytest.mark.parametrize("raw", [
    "1990123", "1990-123",  # 1990-01-23 or 1990-12-03
    "02/03/1990", "02.03.1990", "02031990",  # 3 February (US) or 2 March
    "19900231", "2999-01-01", "1899-12-31",  # no such day, the future, before 1900
])
def test_ambiguous_or_impossible_birth_dates_are_dropped(raw: str) -> None:
    hashed, problems = hash_user_data({"db": raw})
    assert hashed == {}
    assert problems == ["user_data.db: not a usable value (dropped)"]


@pytest.mark.parametrize(("raw", "normalized"), [
    ("19901203", "19901203"), ("1990-1-23", "19900123"), ("1990 12 3", "19901203"),
    ("03/03/1990", "19900303"), ("13/02/1990", "19900213"), ("02/13/1990", "19900213"),
    ("13021990", "19900213"), ("12311990", "19901231"),
])
def test_birth_dates_with_one_reading_are_kept(raw: str, normalized: str) -> None:
    assert NORMALIZERS["db"](raw) == normalized


def test_every_documented_user_data_key_is_hashed_or_passed_on() -> None:
    app_user_id = sha("user-42")
    clear = {key: f"value-of-{key}" for key in CLEAR_KEYS}
    hashed, problems = hash_user_data({"app_user_id": app_user_id, **clear})
    assert problems == []
    assert hashed == {"app_user_id": app_user_id, **clear}
    assert {"page_scoped_user_id", "ig_account_id", "ig_sid", "ctwa_clid", "lead_id", "anon_id",
            "madid", "subscription_id", "fb_login_id", "page_id"} <= CLEAR_KEYS
    # A raw app_user_id is hashed the way the Node SDK's setAppUserId does: trimmed, lowercase.
    assert hash_user_data({"app_user_id": " User-42 "}) == ({"app_user_id": app_user_id}, [])


def test_the_docs_name_every_user_data_key() -> None:
    docs = (ROOT / "docs" / "meta-capi.md").read_text()
    section = docs.split("## user_data: what is hashed and how")[1].split("\n## ")[0]
    named = set(re.findall(r"`([a-z_0-9]+)`", section))
    assert (HASHED_KEYS | CLEAR_KEYS) <= named


# Meta's Business SDKs' own unit-test cases (tests/data/sdk-vectors/README.md).


def _gateway(vector: dict[str, str]) -> str | None:
    """What the gateway makes of a vector: the normalized text, or for an already-hashed input
    the value it sends."""
    if vector["outcome"] == "hash":
        return hash_value(vector["key"], vector["input"], None)
    return NORMALIZERS[vector["key"]](vector["input"])


def _agrees(vector: dict[str, str], result: str | None) -> bool:
    outcome = vector["outcome"]
    if outcome == "refused":
        return result is None
    if outcome == "accepted":
        return result is not None
    return result == vector["expected"]


@pytest.mark.parametrize("vector", VECTORS["vectors"],
                         ids=lambda v: f"{v['sdk']}-{v['key']}-{v['input']!r}")
def test_sdk_vectors_agree_unless_the_gateway_differs_on_purpose(vector: dict[str, str]) -> None:
    result = _gateway(vector)
    if "why" in vector:  # a deliberate difference: pinned, and really a difference
        assert vector["why"] in VECTORS["reasons"]
        assert result == vector["gateway"]
        assert not _agrees(vector, result)
    else:
        assert _agrees(vector, result)


def test_sdk_vectors_cover_every_sdk_with_its_license_and_commit() -> None:
    readme = (SDK_VECTORS / "README.md").read_text()
    for sdk, origin in VECTORS["sdks"].items():
        assert (SDK_VECTORS / f"LICENSE-{sdk}").read_text().startswith("Copyright")
        assert origin["commit"] in readme and origin["repo"] in readme
        assert any(v["sdk"] == sdk for v in VECTORS["vectors"])
    assert {v["sdk"] for v in VECTORS["vectors"]} == set(VECTORS["sdks"])


def _shown(value: str | None) -> str:
    return "dropped" if value is None else f"`{json.dumps(value, ensure_ascii=False)}`"


def test_docs_list_exactly_the_deliberate_differences() -> None:
    docs = (ROOT / "docs" / "meta-capi.md").read_text(encoding="utf-8")
    rows = {line for line in docs.splitlines() if line.startswith("| ") and line.endswith("` |")
            and line.split(" | ")[0][2:] in VECTORS["sdks"]}
    expected = set()
    for v in VECTORS["vectors"]:
        if "why" in v:
            sdk_gives = _shown(v.get("expected")) if v["outcome"] in ("normalized", "hash") \
                else v["outcome"]
            shown_input = json.dumps(v["input"], ensure_ascii=False)
            expected.add(f"| {v['sdk']} | `{v['key']}` | `{shown_input}` | {sdk_gives}"
                         f" | {_shown(v['gateway'])} | `{v['why']}` |")
    assert rows == expected
    flat = " ".join(docs.split())
    for name, reason in VECTORS["reasons"].items():
        assert f"- `{name}`: {reason}" in flat


@pytest.mark.parametrize("key", ["fn", "ln", "ct", "st"])
def test_a_spacing_accent_composes_with_its_letter(key: str) -> None:
    """`A` + U+00B4 (found by the property above): NFKC turns the accent into a space and a
    combining mark; with the space gone the mark composes, so the value normalizes to itself."""
    once = NORMALIZERS[key]("A\u00b4")
    assert once == "\u00e1" and NORMALIZERS[key](once) == once
