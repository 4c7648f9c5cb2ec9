"""Who a GA4 event is about: the `_ga` cookie and its client id, the session, and the
user-provided data hashed the way Google documents it (docs/destinations.md).

- `_ga = GA1.{labels}.{random 31-bit}.{unix seconds}`; the client id is its last two parts.
- Server events carry no `_ga`: their client id is derived from what they do carry, stably
  (the same visitor gets the same id on every event and retry): Meta's `fbp` browser id, else
  the hashed external_id, else the event id (one client per event).
- The session id cannot be read (GA4 keeps it in `_ga_<container>`, a cookie per measurement
  id, and the types' cookie names are fixed): it is the start of the 30-minute window of the
  event's time, in Unix seconds (GA4's own session ids are session start times too).
- user_data: `sha256_email_address` / `sha256_phone_number` lists and one `address`, built
  from the raw values before Meta's hashing replaces them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from ...hashing import looks_hashed
from ...normalize import normalize_phone
from ...places import country_code

__all__ = ["COOKIE", "SESSION_SECONDS", "client_id", "ga_cookie", "session_id", "user_data"]

COOKIE = "_ga"
SESSION_SECONDS = 30 * 60
MAX_EMAILS = MAX_PHONES = 3  # GA4 takes up to 3 of each
_GA = re.compile(r"GA1\.([0-9]{1,3})\.([0-9]{1,20})\.([0-9]{1,20})")
_FBP = re.compile(r"fb\.[0-9]+\.([0-9]{1,20})\.([0-9]{1,20})(\..*)?")
_GMAIL = ("gmail.com", "googlemail.com")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_SPACES = re.compile(r"\s+")


def ga_cookie(found: Mapping[str, str], now: float, labels: int) -> str:
    """The visitor's valid `_ga` as it is, else a new one."""
    value = found.get(COOKIE, "")
    if _GA.fullmatch(value):
        return value
    return f"GA1.{labels}.{secrets.randbelow(2**31 - 1) + 1}.{int(now)}"


def client_id(cookies: Mapping[str, Any], user_data: Mapping[str, Any], event_id: str) -> str:
    """GA4's client_id for an event: from `_ga`, else derived (see the module's doc)."""
    match = _GA.fullmatch(str(cookies.get(COOKIE, "")))
    if match:
        return f"{match.group(2)}.{match.group(3)}"
    fbp = _FBP.fullmatch(str(user_data.get("fbp") or ""))
    if fbp:
        # fb.N.<creation ms>.<random>: the same shape as _ga's <random>.<creation s>.
        return f"{fbp.group(2)}.{int(fbp.group(1)) // 1000}"
    external = user_data.get("external_id")
    if isinstance(external, list):
        external = external[0] if external else None
    if isinstance(external, str) and external:
        return _derived("external_id:" + external)
    return _derived("event_id:" + event_id)


def _derived(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    first = int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
    second = int.from_bytes(digest[4:8], "big") & 0x7FFFFFFF
    return f"{first}.{second}"


def session_id(event_time: Any) -> str:
    """The start of the event's 30-minute window (Unix seconds)."""
    if isinstance(event_time, bool) or not isinstance(event_time, int | float):
        return "0"
    return str(int(event_time) // SESSION_SECONDS * SESSION_SECONDS)


# -- user-provided data ---------------------------------------------------------------------

def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _values(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(item) for item in items
            if isinstance(item, str | int | float) and not isinstance(item, bool)
            and str(item).strip()]


def _hashed(value: str) -> str | None:
    """A SHA-256 hex digest sent already hashed (no appendix), or None."""
    canonical = looks_hashed(value)
    return canonical if canonical is not None and len(canonical) == 64 else None


def normalize_email(value: str) -> str | None:
    """Trimmed, lowercase, no spaces; gmail.com / googlemail.com without dots before the @."""
    text = _SPACES.sub("", value).lower()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if not _EMAIL.fullmatch(text):
        return None
    local, _, domain = text.rpartition("@")
    if domain in _GMAIL:
        local = local.replace(".", "")
    return f"{local}@{domain}" if local else None


def normalize_phone_e164(value: str, country: str | None) -> str | None:
    """E.164: '+', the country code and the number, digits only."""
    digits = normalize_phone(value, country)
    return "+" + digits if digits else None


def normalize_name(value: str) -> str | None:
    """first/last name, city, region: no digits or symbols, lowercase, trimmed (inner spaces
    kept as one)."""
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    kept = "".join(ch for ch in value if ch.isalpha() or ch.isspace())
    return _SPACES.sub(" ", kept).strip().lower() or None


def normalize_postal_code(value: str) -> str | None:
    """Without '.' and '~', trimmed."""
    return value.replace(".", "").replace("~", "").strip() or None


def user_data(raw: Mapping[str, Any], default_country: str | None) -> dict[str, Any]:
    """GA4's `user_data` from the raw user_data (Meta's keys), or {} when there is nothing.

    Values that arrived hashed: an email hash is used as it is (Meta hashes the trimmed,
    lowercase address: the same as GA4's except for dotted gmail addresses); a phone hash is
    not (Meta hashes digits without GA4's '+'); first and last name hashes are used (Meta's
    names are lowercase letters, as GA4's are for most names); hashed places are not (GA4 wants
    city, region, postal code and country in the clear)."""
    country = None
    for value in _values(raw.get("country")):
        if _hashed(value) is None:
            country = country_code(value)
            break
    country = country or (default_country.lower() if default_country else None)
    result: dict[str, Any] = {}
    emails = _digests(raw.get("em"), normalize_email, use_hashed=True)
    if emails:
        result["sha256_email_address"] = emails[:MAX_EMAILS]
    phones = _digests(raw.get("ph"), lambda v: normalize_phone_e164(v, country),
                      use_hashed=False)
    if phones:
        result["sha256_phone_number"] = phones[:MAX_PHONES]
    address: dict[str, str] = {}
    for key, field in (("fn", "sha256_first_name"), ("ln", "sha256_last_name")):
        digests = _digests(raw.get(key), normalize_name, use_hashed=True)
        if digests:
            address[field] = digests[0]
    if address:
        # Where the person lives, in the clear as GA4 documents it: only beside a name, the
        # part that identifies them.
        for key, field, normalize in (("ct", "city", normalize_name),
                                      ("st", "region", normalize_name),
                                      ("zp", "postal_code", normalize_postal_code)):
            clear = _clear(raw.get(key), normalize)
            if clear:
                address[field] = clear
        if country:
            address["country"] = country.upper()
        result["address"] = [address]
    return result


def _digests(value: Any, normalize: Callable[[str], str | None], *, use_hashed: bool) -> list[str]:
    digests: list[str] = []
    for item in _values(value):
        already = _hashed(item)
        if already is not None:
            digest: str | None = already if use_hashed else None
        else:
            normalized = normalize(item)
            digest = _sha256(normalized) if normalized else None
        if digest and digest not in digests:
            digests.append(digest)
    return digests


def _clear(value: Any, normalize: Callable[[str], str | None]) -> str | None:
    for item in _values(value):
        if _hashed(item) is None and (normalized := normalize(item)):
            return normalized
    return None

