"""The visitor's consent, as a hit signals it, and what each kind of destination needs.

Signals (any may be absent; an absent signal is not a refusal: sites without a consent tool
send none):
- `cs`: the snippet's own, from `fbq('consent', {ad_storage: 'denied', ...})`: four characters
  for ad_storage, analytics_storage, ad_user_data, ad_personalization, each `1` granted, `0`
  denied, `-` unknown (`cs=10--`).
- `gcs`: Google Consent Mode's state as Google's tags send it, `G1` then ad_storage and
  analytics_storage (`G100`, `G111`, `G1--`).
- `gcd`: Consent Mode v2's fuller state as Google's tags send it (`13r3r3r3r5`): after a first
  character, a pair per signal (ad_storage, analytics_storage, ad_user_data,
  ad_personalization) whose second character, read as a base64url digit (`0-9a-zA-Z-_`), holds
  the page's default in bits 2-3 and its update in bits 0-1 (1 not set, 2 denied, 3 granted);
  the update wins over the default.
- `gdpr=1` with `gdpr_consent`: an IAB TCF v2 consent string. Its purposes map the way Google
  maps them: ad_storage = purpose 1 (store and access information on a device), ad_user_data =
  purposes 1 and 7 (measure ad performance), ad_personalization = purposes 3 and 4
  (personalised ads); analytics_storage = purpose 1 too (analytics cookies are device storage).
Later signals override earlier ones per field: the TCF string, then `gcs`, `gcd`, `cs`. A
signal that cannot be read is refused with a 400 naming the parameter: guessing consent either
way would be wrong.

Destinations declare `consent: ads | analytics | none`: `ads` needs ad_storage and ad_user_data
not denied, `analytics` needs analytics_storage not denied, `none` needs nothing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..errors import HitError

__all__ = ["CONSENT_CATEGORIES", "Consent", "read_consent"]

CONSENT_CATEGORIES = ("ads", "analytics", "none")
_FIELDS = ("ad_storage", "analytics_storage", "ad_user_data", "ad_personalization")
_STATES = {"1": True, "0": False, "-": None}
_TCF_PURPOSES_AT = 152  # bit offset of PurposesConsent in a TCF v2 core string
_MAX_TC_STRING = 4096


@dataclass(frozen=True, slots=True)
class Consent:
    """True granted, False denied, None unknown (no signal)."""

    ad_storage: bool | None = None
    analytics_storage: bool | None = None
    ad_user_data: bool | None = None
    ad_personalization: bool | None = None

    def allows(self, category: str) -> bool:
        """May events go to a destination of this category?"""
        if category == "ads":
            return self.ad_storage is not False and self.ad_user_data is not False
        if category == "analytics":
            return self.analytics_storage is not False
        return True

    def allows_storage(self, category: str) -> bool:
        """May a platform of this category have its cookies set?"""
        if category == "ads":
            return self.ad_storage is not False
        if category == "analytics":
            return self.analytics_storage is not False
        return True

    def as_dict(self) -> dict[str, str]:
        """The signals given, as Google Consent Mode words (`granted` / `denied`)."""
        return {name: "granted" if value else "denied" for name in _FIELDS
                if (value := getattr(self, name)) is not None}


def read_consent(params: Mapping[str, str]) -> Consent | None:
    """The hit's consent signals, or None when it carries none; HitError if one is unreadable."""
    if ("cs" not in params and "gcs" not in params and "gcd" not in params
            and params.get("gdpr") != "1"):
        return None
    consent = Consent()
    if params.get("gdpr") == "1":
        consent = _merge(consent, _tcf(params.get("gdpr_consent", "")))
    gcs = params.get("gcs")
    if gcs is not None:
        if len(gcs) != 4 or not gcs.startswith("G1") or any(c not in _STATES for c in gcs[2:]):
            raise HitError("parameter 'gcs' must be Google's consent state such as G111 or G10-")
        consent = _merge(consent, Consent(_STATES[gcs[2]], _STATES[gcs[3]]))
    gcd = params.get("gcd")
    if gcd is not None:
        consent = _merge(consent, _gcd(gcd))
    cs = params.get("cs")
    if cs is not None:
        if len(cs) != 4 or any(c not in _STATES for c in cs):
            raise HitError("parameter 'cs' must be four of 1, 0 or - (ad_storage, "
                           "analytics_storage, ad_user_data, ad_personalization)")
        consent = _merge(consent, Consent(*(_STATES[c] for c in cs)))
    return consent


def _merge(base: Consent, signal: Consent) -> Consent:
    return replace(base, **{name: value for name in _FIELDS
                            if (value := getattr(signal, name)) is not None})


_BASE64URL = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"
_GCD_STATES = {2: False, 3: True}  # 1: not set


def _gcd(text: str) -> Consent:
    """Consent Mode v2's `gcd`: per signal, the update if given, else the default."""
    if len(text) < 9 or len(text) > 64 or any(c not in _BASE64URL for c in text):
        raise HitError("parameter 'gcd' must be Google's consent string such as 13r3r3r3r5")
    states: list[bool | None] = []
    for position in (2, 4, 6, 8):
        value = _BASE64URL.index(text[position])
        update, default = _GCD_STATES.get(value & 3), _GCD_STATES.get((value >> 2) & 3)
        states.append(update if update is not None else default)
    return Consent(*states)


def _tcf(text: str) -> Consent:
    """The purposes of a TCF v2 consent string's core segment."""
    core = text.split(".", 1)[0]
    if not core or len(text) > _MAX_TC_STRING:
        raise HitError("parameter 'gdpr_consent' is missing or too long (gdpr=1 needs a TCF "
                       "v2 consent string)")
    try:
        raw = base64.urlsafe_b64decode(core + "=" * (-len(core) % 4))
    except (binascii.Error, ValueError):
        raise HitError("parameter 'gdpr_consent' is not a TCF v2 consent string") from None
    bits = int.from_bytes(raw, "big")
    size = len(raw) * 8
    if size < _TCF_PURPOSES_AT + 24 or bits >> (size - 6) != 2:
        raise HitError("parameter 'gdpr_consent' is not a TCF v2 consent string")

    def purpose(number: int) -> bool:
        return bool(bits >> (size - 1 - (_TCF_PURPOSES_AT + number - 1)) & 1)

    device = purpose(1)
    return Consent(ad_storage=device, analytics_storage=device,
                   ad_user_data=device and purpose(7),
                   ad_personalization=purpose(3) and purpose(4))
