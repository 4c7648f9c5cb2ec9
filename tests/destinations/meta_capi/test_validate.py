"""Meta's rules for an event, as readable reasons that name fields and never values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.destinations.meta_capi.validate import validate_event

NOW = 1_800_000_000.0


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_name": "PageView", "event_time": int(NOW), "event_id": "e1",
        "action_source": "website", "event_source_url": "https://shop.example.com/",
        "user_data": {"client_user_agent": "Mozilla/5.0", "client_ip_address": "192.0.2.1"},
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def test_a_good_event_has_no_reasons() -> None:
    assert validate_event(event(), NOW) == []


@pytest.mark.parametrize(("changes", "reason"), [
    ({"event_name": ""}, "event_name is required"),
    ({"event_name": "x" * 101}, "event_name is longer than 100 characters"),
    ({"action_source": "web"}, "action_source must be one of app, business_messaging, chat, "
                               "email, other, phone_call, physical_store, system_generated, "
                               "website"),
    ({"event_time": "yesterday"}, "event_time must be a Unix timestamp in seconds"),
    ({"event_time": int(NOW) - 8 * 86400}, "event_time is more than 7 days old"),
    ({"event_time": int(NOW) + 3600}, "event_time is in the future"),
    ({"user_data": {}, "action_source": "email"},
     "user_data needs at least one customer information parameter"),
    ({"user_data": {"client_ip_address": "192.0.2.1"}},
     "website events need user_data.client_user_agent"),
    ({"event_source_url": None}, "website events need event_source_url"),
    ({"event_source_url": "javascript:alert(1)"}, "event_source_url must be an http(s) URL"),
    ({"event_name": "Purchase", "custom_data": {"currency": "EUR"}},
     "Purchase events need custom_data.value as a number"),
    ({"event_name": "Purchase", "custom_data": {"value": 5, "currency": "EURO"}},
     "Purchase events need custom_data.currency as a 3-letter ISO 4217 code"),
])
def test_each_rule_gives_its_reason(changes: dict[str, Any], reason: str) -> None:
    assert validate_event(event(**changes), NOW) == [reason]


def test_physical_store_events_may_be_62_days_old() -> None:
    store = event(action_source="physical_store", event_source_url=None,
                  user_data={"em": "a" * 64}, event_time=int(NOW) - 60 * 86400)
    assert validate_event(store, NOW) == []
    store["event_time"] = int(NOW) - 63 * 86400
    assert validate_event(store, NOW) == ["event_time is more than 62 days old"]


def test_small_clock_skew_is_tolerated() -> None:
    assert validate_event(event(event_time=int(NOW) + 30), NOW) == []


def test_a_purchase_with_value_and_currency_is_fine() -> None:
    purchase = event(event_name="Purchase", custom_data={"value": 19.99, "currency": "usd"})
    assert validate_event(purchase, NOW) == []


@given(st.dictionaries(st.text(max_size=20), st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(),
    st.dictionaries(st.text(max_size=5), st.text(), max_size=3),
)))
def test_validation_never_raises(data: dict[str, Any]) -> None:
    assert isinstance(validate_event(data, NOW), list)
