"""Normalize personal data the way Meta matches it (docs/meta-capi.md), one function per
user_data key.

Each normalizer takes the raw text and returns the normalized text, or None when nothing usable
remains (an empty value, an address with no `@`, a date that does not exist). Where Meta's SDKs
disagree, Meta's documented target forms win: `Female` -> `f`, `United States` -> `us`,
`California` -> `ca`, `94025-1234` -> `94025`, phone numbers with their country code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date
from functools import lru_cache

import phonenumbers

from .places import country_code, region_code

__all__ = ["NORMALIZERS", "normalize_phone"]

_EMAIL = re.compile(r"[^@\s]+@[\w-]+(?:\.[\w-]+)+")  # a host name after the @: `baz.com/` is none
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")  # \d is any script's decimal digit
_NOT_DIGIT = re.compile(r"[^0-9]")
_ZIP_PLUS_4 = re.compile(r"([0-9]{5})-?[0-9]{4}")
_ONE_OR_TWO_DIGITS = re.compile(r"[0-9]{1,2}")
_FOUR_DIGITS = re.compile(r"[0-9]{4}")
_FIRST_BIRTH_YEAR = 1900  # Meta: years from 1900 to the current year
_GENDERS = {
    "f": "f", "female": "f", "woman": "f", "w": "f", "girl": "f", "femme": "f", "frau": "f",
    "m": "m", "male": "m", "man": "m", "boy": "m", "homme": "m", "mann": "m",
}


def _fold(value: str) -> str:
    """Unicode NFKC for non-ASCII text, and digits of any script as ASCII digits: full-width
    digits and letters (from East Asian input methods) become ASCII, `é` typed either way one
    `é`, Arabic-Indic digits ASCII digits. These are the same characters written differently;
    letters of other scripts stay."""
    if value.isascii():  # fast path: almost every value
        return value
    folded = unicodedata.normalize("NFKC", value)
    return _OTHER_DIGIT.sub(lambda digit: str(unicodedata.decimal(digit.group())), folded)


def _text(value: str) -> str:
    """Folded, trimmed, lowercase."""
    return _fold(value).strip().lower()


def _letters_and_digits(value: str) -> str:
    return _composed("".join(ch for ch in _text(value) if ch.isalnum() or _is_mark(ch)))


def _letters(value: str) -> str:
    return _composed("".join(ch for ch in _text(value) if ch.isalpha() or _is_mark(ch)))


def _composed(kept: str) -> str:
    """Marks that lost what stood between them and a letter (`A` + U+00B4: NFKC makes the accent a
    space and a combining mark; the space goes) compose with it, as NFKC would have: the
    result normalizes to itself."""
    return kept if kept.isascii() else unicodedata.normalize("NFC", kept)


def _is_mark(ch: str) -> bool:
    """Vowel signs and other combining marks are part of a letter in many scripts (the `ि` of
    Hindi `अनिल`); after NFKC the ones left have no composed form, so they stay."""
    return not ch.isascii() and unicodedata.category(ch).startswith("M")


def email(value: str) -> str | None:
    """em: trimmed and lowercase (Meta's rule), refused unless `name@domain.tld`; never
    rewritten, since deleting characters can turn one person's address into another's."""
    text = _text(value)
    return text if _EMAIL.fullmatch(text) else None


def normalize_phone(value: str, country: str | None = None) -> str | None:
    """Digits with the country code, no leading zeros; a national number gets the country's
    calling code when the country is known (from the event, geo, or config)."""
    return _phone(_fold(value).strip(), (country or "").upper() or None)


@lru_cache(maxsize=4096)
def _phone(value: str, region: str | None) -> str | None:
    international = value.startswith(("+", "00"))
    if region and not international:
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_valid_number(number):
            return f"{number.country_code}{number.national_number}"
    digits = _NOT_DIGIT.sub("", value).lstrip("0")
    # E.164: at most 15 digits; under 7 there is no room for a country code and a subscriber.
    return digits if 7 <= len(digits) <= 15 else None


def name(value: str) -> str | None:
    """fn/ln: lowercase letters (any script) and digits; no spaces or punctuation."""
    return _letters_and_digits(value) or None


def gender(value: str) -> str | None:
    return _GENDERS.get(_text(value))


# Every way a birth date is accepted, with the readings of its fields; a date is accepted only
# when exactly one reading is a real date (1900 to today): `1990-2-3` and `19900203` are one
# date, `1990123` (Jan 23 or Dec 3) and `02/03/1990` (Feb 3 or Mar 2) are refused.
_YMD, _MDY, _DMY = ("y", "m", "d"), ("m", "d", "y"), ("d", "m", "y")
_SEP = "[-/. ]"
_DATE_FORMATS: tuple[tuple[re.Pattern[str], tuple[tuple[str, str, str], ...]], ...] = (
    (re.compile(rf"([0-9]{{4}}){_SEP}?([0-9]{{2}}){_SEP}?([0-9]{{2}})"), (_YMD,)),
    (re.compile(rf"([0-9]{{4}}){_SEP}([0-9]{{1,2}}){_SEP}([0-9]{{1,2}})"), (_YMD,)),
    (re.compile(rf"([0-9]{{1,2}}){_SEP}([0-9]{{1,2}}){_SEP}([0-9]{{4}})"), (_MDY, _DMY)),
    (re.compile(r"([0-9]{2})([0-9]{2})([0-9]{4})"), (_MDY, _DMY)),
)


def birth_date(value: str) -> str | None:
    """db: YYYYMMDD from ISO, compact, US (MM/DD/YYYY) or day-first (DD.MM.YYYY) dates."""
    text = _fold(value).strip()
    today = date.today()
    readings: set[date] = set()
    for pattern, orders in _DATE_FORMATS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        for order in orders:
            parts = dict(zip(order, map(int, match.groups()), strict=True))
            try:
                born = date(parts["y"], parts["m"], parts["d"])
            except ValueError:
                continue
            if _FIRST_BIRTH_YEAR <= born.year and born <= today:
                readings.add(born)
    return readings.pop().strftime("%Y%m%d") if len(readings) == 1 else None


def city(value: str) -> str | None:
    """ct: lowercase letters (incl. non-ASCII), no digits, spaces or punctuation."""
    return _letters(value) or None


def state(value: str) -> str | None:
    """st: two-letter code for US states / Canadian provinces; elsewhere letters only."""
    return region_code(value) or _letters(value) or None


def zip_code(value: str) -> str | None:
    """zp: lowercase, no spaces or dashes; US ZIP+4 keeps its first five digits. Postal codes
    are Latin letters and digits everywhere, at least three of them."""
    text = _text(value).replace(" ", "")
    if not text.isascii():
        return None
    plus4 = _ZIP_PLUS_4.fullmatch(text)
    if plus4:
        return plus4.group(1)
    code = "".join(ch for ch in text if ch.isalnum())
    return code if len(code) >= 3 else None


def country(value: str) -> str | None:
    """country: ISO 3166-1 alpha-2, lowercase, from a code or a name."""
    return country_code(value)


def identifier(value: str) -> str | None:
    """external_id, app_user_id: trimmed and lowercased (the param-builder and Node SDK rule),
    then hashed like the rest so browser and server copies match. An identifier is opaque: no
    compatibility folding, only NFC so one visible text hashes one way."""
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    return value.strip().lower() or None


def first_five(value: str) -> str | None:
    normalized = name(value)
    return normalized[:5] if normalized else None


def initial(value: str) -> str | None:
    normalized = name(value)
    return normalized[:1] if normalized else None


def _two_digits(low: int, high: int) -> Callable[[str], str | None]:
    """dobd/dobm: one or two digits in range, zero-padded; anything else (`-1`, `2b`, `001`) is
    refused rather than read as some other day."""
    def normalize(value: str) -> str | None:
        text = _fold(value).strip()
        if _ONE_OR_TWO_DIGITS.fullmatch(text) and low <= int(text) <= high:
            return f"{int(text):02d}"
        return None

    return normalize


def birth_year(value: str) -> str | None:
    """doby: four digits, 1900 to this year (Meta's range for db)."""
    text = _fold(value).strip()
    if _FOUR_DIGITS.fullmatch(text) and _FIRST_BIRTH_YEAR <= int(text) <= date.today().year:
        return text
    return None


# Every hashed user_data key and its normalizer (ph is special: it needs the country).
NORMALIZERS: dict[str, Callable[[str], str | None]] = {
    "em": email,
    "ph": normalize_phone,
    "fn": name,
    "ln": name,
    "ge": gender,
    "db": birth_date,
    "ct": city,
    "st": state,
    "zp": zip_code,
    "country": country,
    "external_id": identifier,
    "app_user_id": identifier,
    "f5first": first_five,
    "f5last": first_five,
    "fi": initial,
    "dobd": _two_digits(1, 31),
    "dobm": _two_digits(1, 12),
    "doby": birth_year,
}
