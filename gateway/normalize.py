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

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_NOT_DIGIT = re.compile(r"\D")
_ZIP_PLUS_4 = re.compile(r"(\d{5})-?\d{4}")
_GENDERS = {
    "f": "f", "female": "f", "woman": "f", "w": "f", "girl": "f", "femme": "f", "frau": "f",
    "m": "m", "male": "m", "man": "m", "boy": "m", "homme": "m", "mann": "m",
}


def _text(value: str) -> str:
    """Trimmed, lowercase, NFC (so `é` typed either way hashes the same)."""
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    return value.strip().lower()


def _letters_and_digits(value: str) -> str:
    return "".join(ch for ch in _text(value) if ch.isalnum())


def email(value: str) -> str | None:
    text = _text(value)
    return text if _EMAIL.fullmatch(text) else None


def normalize_phone(value: str, country: str | None = None) -> str | None:
    """Digits with the country code, no leading zeros; a national number gets the country's
    calling code when the country is known (from the event, geo, or config)."""
    return _phone(value.strip(), (country or "").upper() or None)


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
    return digits or None


def name(value: str) -> str | None:
    """fn/ln: lowercase letters (any script) and digits; no spaces or punctuation."""
    return _letters_and_digits(value) or None


def gender(value: str) -> str | None:
    return _GENDERS.get(_text(value))


_DATE_FORMATS: tuple[tuple[re.Pattern[str], tuple[str, str, str]], ...] = (
    (re.compile(r"(\d{4})[-/. ]?(\d{1,2})[-/. ]?(\d{1,2})"), ("y", "m", "d")),
    (re.compile(r"(\d{1,2})[-/. ](\d{1,2})[-/. ](\d{4})"), ("a", "b", "y")),
    (re.compile(r"(\d{2})(\d{2})(\d{4})"), ("a", "b", "y")),
)


def birth_date(value: str) -> str | None:
    """db: YYYYMMDD from ISO, compact, US (MM/DD/YYYY) or day-first (DD.MM.YYYY) dates."""
    text = value.strip()
    for pattern, order in _DATE_FORMATS:
        match = pattern.fullmatch(text)
        if not match:
            continue
        parts = dict(zip(order, (int(g) for g in match.groups()), strict=True))
        year = parts["y"]
        if "m" in parts:
            candidates = [(parts["m"], parts["d"])]
        else:  # MM/DD (US, first) or DD/MM, whichever is a real date
            candidates = [(parts["a"], parts["b"]), (parts["b"], parts["a"])]
        for month, day in candidates:
            try:
                born = date(year, month, day)
            except ValueError:
                continue
            if 1900 <= born.year <= date.today().year:
                return born.strftime("%Y%m%d")
        return None
    return None


def city(value: str) -> str | None:
    """ct: lowercase letters (incl. non-ASCII) and digits, no spaces or punctuation."""
    return _letters_and_digits(value) or None


def state(value: str) -> str | None:
    """st: two-letter code for US states / Canadian provinces; elsewhere letters and digits."""
    return region_code(value) or _letters_and_digits(value) or None


def zip_code(value: str) -> str | None:
    """zp: lowercase, no spaces or dashes; US ZIP+4 keeps its first five digits."""
    text = _text(value)
    plus4 = _ZIP_PLUS_4.fullmatch(text.replace(" ", ""))
    if plus4:
        return plus4.group(1)
    return "".join(ch for ch in text if ch.isalnum()) or None


def country(value: str) -> str | None:
    """country: ISO 3166-1 alpha-2, lowercase, from a code or a name."""
    return country_code(value)


def external_id(value: str) -> str | None:
    """external_id: trimmed and lowercased (the param-builder rule), then hashed like the rest
    so browser and server copies match."""
    return _text(value) or None


def first_five(value: str) -> str | None:
    normalized = name(value)
    return normalized[:5] if normalized else None


def initial(value: str) -> str | None:
    normalized = name(value)
    return normalized[:1] if normalized else None


def _two_digits(low: int, high: int) -> Callable[[str], str | None]:
    def normalize(value: str) -> str | None:
        digits = _NOT_DIGIT.sub("", value)
        if digits and low <= int(digits) <= high:
            return f"{int(digits):02d}"
        return None

    return normalize


def birth_year(value: str) -> str | None:
    digits = _NOT_DIGIT.sub("", value)
    return digits if len(digits) == 4 and 1900 <= int(digits) <= date.today().year else None


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
    "external_id": external_id,
    "f5first": first_five,
    "f5last": first_five,
    "fi": initial,
    "dobd": _two_digits(1, 31),
    "dobm": _two_digits(1, 12),
    "doby": birth_year,
}
