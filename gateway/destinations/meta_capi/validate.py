"""Meta's rules for a Conversions API event (docs/meta-capi.md), as readable reasons.

An event that breaks one is not relayed to a `meta_capi` destination (Meta would reject its
whole batch). Reasons name fields, never values.
"""

from __future__ import annotations

from typing import Any

from ...model import ACTION_SOURCES, MAX_EVENT_NAME, URL
from ..checks import check_purchase, check_time

__all__ = ["MAX_AGE_DAYS", "expiry", "validate_event"]

MAX_AGE_DAYS = {"physical_store": 62}
DEFAULT_MAX_AGE_DAYS = 7


def validate_event(data: dict[str, Any], now: float) -> list[str]:
    """Every reason Meta would refuse this event; empty when it is fine."""
    reasons: list[str] = []
    name = data.get("event_name")
    if not isinstance(name, str) or not name.strip():
        reasons.append("event_name is required")
    elif len(name) > MAX_EVENT_NAME:
        reasons.append(f"event_name is longer than {MAX_EVENT_NAME} characters")

    source = data.get("action_source")
    if source not in ACTION_SOURCES:
        reasons.append("action_source must be one of " + ", ".join(sorted(ACTION_SOURCES)))
    reasons += _check_time(data.get("event_time"), source, now)

    user_data = data.get("user_data")
    if not isinstance(user_data, dict) or not any(user_data.values()):
        reasons.append("user_data needs at least one customer information parameter")
        user_data = {}
    if source == "website":
        if not user_data.get("client_user_agent"):
            reasons.append("website events need user_data.client_user_agent")
        url = data.get("event_source_url")
        if not url:
            reasons.append("website events need event_source_url")
        elif not isinstance(url, str) or not URL.fullmatch(url):
            reasons.append("event_source_url must be an http(s) URL")

    if name == "Purchase":
        reasons += check_purchase(data.get("custom_data"))
    return reasons


def _check_time(event_time: Any, source: Any, now: float) -> list[str]:
    return check_time(event_time, now, MAX_AGE_DAYS.get(str(source), DEFAULT_MAX_AGE_DAYS))


def expiry(data: dict[str, Any]) -> float:
    """When Meta stops accepting this (valid) event: event_time plus its window."""
    days = MAX_AGE_DAYS.get(str(data.get("action_source")), DEFAULT_MAX_AGE_DAYS)
    event_time = data.get("event_time")
    if isinstance(event_time, bool) or not isinstance(event_time, int | float):
        return 0.0  # an invalid event: never sent, so it never expires in the queue
    return float(event_time) + days * 86400
