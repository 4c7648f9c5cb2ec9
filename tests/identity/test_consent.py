"""Consent signals a hit carries (the snippet's `cs`, Google's `gcs`, IAB TCF v2) and what each
destination category needs."""

from __future__ import annotations

import base64

import pytest

from gateway.errors import HitError
from gateway.identity.consent import Consent, read_consent


def tc_string(purposes: set[int]) -> str:
    """A minimal TCF v2 core string with these purposes consented (fields before them zero)."""
    bits = "000010" + "0" * 146  # version 2, then created .. special feature opt-ins
    bits += "".join("1" if n in purposes else "0" for n in range(1, 25))
    bits += "0" * (-len(bits) % 8)
    raw = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_no_signal_is_no_consent_object_and_allows_everything() -> None:
    assert read_consent({"id": "1", "ev": "PageView"}) is None
    assert Consent().allows("ads") and Consent().allows("analytics")


def test_the_snippets_signal_and_googles_state() -> None:
    consent = read_consent({"cs": "01-1"})
    assert consent == Consent(ad_storage=False, analytics_storage=True, ad_personalization=True)
    assert not consent.allows("ads") and consent.allows("analytics") and consent.allows("none")
    assert read_consent({"gcs": "G110"}) == Consent(ad_storage=True, analytics_storage=False)
    # The snippet's signal is the later one and wins per field.
    assert read_consent({"gcs": "G100", "cs": "1---"}) == Consent(True, False)
    assert not Consent(ad_storage=True, ad_user_data=False).allows("ads")
    assert Consent(ad_storage=True, ad_user_data=False).allows_storage("ads")


def test_googles_consent_mode_v2_string() -> None:
    # As base64url digits: 'r' = 27 = default denied (2) << 2 | update granted (3);
    # 'p' = 25 = default denied, update not set (1); 'l' = 21 = neither set.
    assert read_consent({"gcd": "13r3r3r3r5"}) == Consent(True, True, True, True)
    assert read_consent({"gcd": "13p3r3p3l5"}) == Consent(False, True, False, None)
    # The snippet's own signal still has the last word.
    assert read_consent({"gcd": "13r3r3r3r5", "cs": "0---"}) == Consent(False, True, True, True)


def test_tcf_purposes_map_like_googles_mapping() -> None:
    everything = read_consent({"gdpr": "1", "gdpr_consent": tc_string({1, 3, 4, 7})})
    assert everything == Consent(True, True, True, True)
    no_measurement = read_consent({"gdpr": "1", "gdpr_consent": tc_string({1})})
    assert no_measurement == Consent(True, True, False, False)
    assert not no_measurement.allows("ads") and no_measurement.allows("analytics")
    nothing = read_consent({"gdpr": "1", "gdpr_consent": tc_string(set()) + ".YAAAAAAA"})
    assert nothing == Consent(False, False, False, False)
    assert read_consent({"gdpr": "0", "gdpr_consent": "whatever"}) is None


@pytest.mark.parametrize(("params", "named"), [
    ({"cs": "1x--"}, "'cs'"), ({"cs": "1"}, "'cs'"), ({"gcs": "G2--"}, "'gcs'"),
    ({"gcd": "13r3"}, "'gcd'"), ({"gcd": "13r3r3r3r5!"}, "'gcd'"),
    ({"gdpr": "1"}, "'gdpr_consent'"), ({"gdpr": "1", "gdpr_consent": "!!!"}, "'gdpr_consent'"),
    ({"gdpr": "1", "gdpr_consent": "BAAA"}, "'gdpr_consent'"),
])
def test_an_unreadable_signal_is_refused_naming_the_parameter(
    params: dict[str, str], named: str
) -> None:
    with pytest.raises(HitError) as caught:
        read_consent(params)
    assert named in caught.value.reason
