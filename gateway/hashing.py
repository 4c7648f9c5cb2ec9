"""Hash user_data the way Meta requires: normalize each value, then SHA-256 (lowercase hex).

Values that already look hashed (SHA-256 or MD5 hex, or SHA-256 with a `.appendix` from newer
SDKs) pass through untouched, so nothing is ever hashed twice. Lists are normalized item by
item, emptied items dropped, duplicates removed. Keys Meta wants in the clear (IP, user agent,
fbp, fbc, ...) are left alone. Problems are reported by key, never with the value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .normalize import NORMALIZERS, normalize_phone

__all__ = ["CLEAR_KEYS", "HASHED_KEYS", "hash_user_data", "hash_value", "looks_hashed"]

# Meta's documented user_data keys (docs/meta-capi.md): the ones it matches by hash, and the
# ones it wants as they are. Any other key is dropped, since it could carry personal data.
HASHED_KEYS = frozenset(NORMALIZERS)
CLEAR_KEYS = frozenset({
    "client_ip_address", "client_user_agent", "fbc", "fbp", "subscription_id", "fb_login_id",
    "lead_id", "ctwa_clid", "page_id", "page_scoped_user_id", "ig_account_id", "ig_sid",
    "anon_id", "madid",
})
# Names backends often use for Meta's short keys.
_ALIASES = {
    "email": "em", "e-mail": "em", "phone": "ph", "phone_number": "ph", "first_name": "fn",
    "firstname": "fn", "last_name": "ln", "lastname": "ln", "gender": "ge", "birthday": "db",
    "date_of_birth": "db", "dob": "db", "city": "ct", "state": "st", "zip": "zp",
    "zip_code": "zp", "postal_code": "zp", "ip": "client_ip_address",
    "user_agent": "client_user_agent", "externalid": "external_id",
}
_SHA256 = re.compile(r"[a-f0-9]{64}")
_MD5 = re.compile(r"[a-f0-9]{32}")
_APPENDIX = re.compile(r"[A-Za-z0-9_-]+")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def looks_hashed(value: str) -> str | None:
    """The canonical form of an already-hashed value (hex lowercased, appendix kept), or None."""
    if len(value) < 32:  # fast path: most raw values are short
        return None
    text = value.strip()
    head, dot, appendix = text.partition(".")
    head = head.lower()
    if _SHA256.fullmatch(head) and (not dot or _APPENDIX.fullmatch(appendix)):
        return head + dot + appendix
    if not dot and _MD5.fullmatch(head):
        return head
    return None


@lru_cache(maxsize=65536)
def hash_value(key: str, value: str, country: str | None) -> str | None:
    """One value of a hashed key: passed through if hashed, else normalized and hashed.

    Cached: a visitor's session sends the same advanced-matching values with every hit."""
    already = looks_hashed(value)
    if already is not None:
        return already
    normalized = normalize_phone(value, country) if key == "ph" else NORMALIZERS[key](value)
    return _sha256(normalized) if normalized else None


def hash_user_data(
    user_data: Mapping[str, Any], *, default_country: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Normalized and hashed user_data, plus one message per value that had to be dropped."""
    problems: list[str] = []
    raw_country = user_data.get("country")
    country = None
    if isinstance(raw_country, str) and looks_hashed(raw_country) is None:
        country = NORMALIZERS["country"](raw_country)
    country = country or default_country
    result: dict[str, Any] = {}
    for key, value in user_data.items():
        if key in CLEAR_KEYS:
            result[key] = value
            continue
        if key not in HASHED_KEYS:
            # An unknown key could carry personal data in the clear (`email`, `phone`): drop it.
            suggestion = _ALIASES.get(key.lower())
            hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
            problems.append(f"user_data.{key}: not a Conversions API key{hint} (dropped)")
            continue
        values = value if isinstance(value, list) else [value]
        hashed: list[str] = []
        for item in values:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                problems.append(f"user_data.{key}: must be text or a list of text (dropped)")
                continue
            digest = hash_value(key, str(item), country)
            if digest is None:
                if str(item).strip():
                    problems.append(f"user_data.{key}: not a usable value (dropped)")
            elif digest not in hashed:
                hashed.append(digest)
        if hashed:
            result[key] = hashed if isinstance(value, list) else hashed[0]
    return result, problems
