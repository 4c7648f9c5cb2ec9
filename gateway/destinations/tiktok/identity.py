"""Who a TikTok event is about: the `_ttp` first-party cookie and TikTok's own hashes.

- `_ttp`: the TikTok pixel's first-party browser id. A valid one a hit carries is kept as it is
  (and set again by the gateway's response, which renews its lifetime); a hit without one gets
  one minted in the pixel's current form, `{ULID}_.tt.{subdomain index}` (26 characters of
  Crockford base32: 48 bits of milliseconds, 80 random bits), so a TikTok pixel on the page
  adopts it and server and browser events share it. Older pixels wrote 27 base62 characters;
  both forms (and any other cookie-safe id of 20-100 characters) are accepted as found.
- Hashes (docs/destinations.md): email trimmed and lowercased; phone in E.164 *with* its
  leading `+` (Meta hashes the digits without it, so the two hashes differ); external_id trimmed
  and lowercased. A value that arrives already hashed (64 hex, with or without the `.appendix` newer
  Meta SDKs add) is passed through, lowercased and bare.
  Computed at ingest from the raw user_data; only hashes are returned, never raw values.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from typing import Any

from ...normalize import NORMALIZERS, normalize_phone

__all__ = ["TTP_COOKIE", "identities", "mint_ttp", "tiktok_cookies", "valid_ttp"]

TTP_COOKIE = "_ttp"
_TTP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{19,99}")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SHA256 = re.compile(r"([0-9a-fA-F]{64})(?:\.[A-Za-z0-9_-]+)?")  # with newer SDKs' appendix
# TikTok's `user` field name for each Meta user_data key it matches people by.
_FIELDS = (("em", "email"), ("ph", "phone"), ("external_id", "external_id"))


def valid_ttp(value: str | None) -> bool:
    """A `_ttp` value worth keeping: cookie-safe, the length of the pixel's ids."""
    return bool(value) and _TTP.fullmatch(value or "") is not None


def mint_ttp(now: float, labels: int) -> str:
    """A new `_ttp` in the pixel's current form: ULID, `_.tt.`, the subdomain index."""
    number = (int(now * 1000) & (2**48 - 1)) << 80 | secrets.randbits(80)
    ulid = "".join(_CROCKFORD[(number >> shift) & 31] for shift in range(125, -1, -5))
    return f"{ulid}_.tt.{labels}"


def tiktok_cookies(found: Mapping[str, str], *, now: float, labels: int) -> dict[str, str]:
    """The visitor's `_ttp`: the valid one found (set again), else a new one."""
    value = found.get(TTP_COOKIE)
    return {TTP_COOKIE: value if value is not None and valid_ttp(value)
            else mint_ttp(now, labels)}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hash(key: str, value: str, country: str | None) -> str | None:
    text = value.strip()
    hashed = _SHA256.fullmatch(text)
    if hashed:
        return hashed.group(1).lower()  # hashed by the sender: passed through, bare
    if key == "ph":
        digits = normalize_phone(text, country)
        return _sha256("+" + digits) if digits else None
    normalized = NORMALIZERS[key](text)
    return _sha256(normalized) if normalized else None


def identities(user_data: Mapping[str, Any], default_country: str | None) -> dict[str, Any]:
    """{email, phone, external_id}: each a hash, or a list of hashes when the event had a
    list; keys without a usable value are left out."""
    raw_country = user_data.get("country")
    country = default_country
    if isinstance(raw_country, str) and not _SHA256.fullmatch(raw_country.strip()):
        country = NORMALIZERS["country"](raw_country) or default_country
    found: dict[str, Any] = {}
    for key, field in _FIELDS:
        value = user_data.get(key)
        values = value if isinstance(value, list) else [value]
        hashes: list[str] = []
        for item in values:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                continue
            digest = _hash(key, str(item), country)
            if digest is not None and digest not in hashes:
                hashes.append(digest)
        if hashes:
            found[field] = hashes if isinstance(value, list) else hashes[0]
    return found
