"""What TikTok's Events API would refuse in an event (docs/destinations.md), as reasons
naming fields, never values; and how long an event stays worth sending."""

from __future__ import annotations

from typing import Any

from ...model import CURRENCY, MAX_EVENT_NAME
from ..checks import FUTURE_SKEW_SECONDS

__all__ = ["MAX_AGE_DAYS", "expiry", "validate_event"]

MAX_AGE_DAYS = 7  # our window for web events (TikTok's pages name none we could rely on)
# Meta's action sources that belong to TikTok's other event sources (app, offline), not to a
# web pixel.
NOT_WEB = frozenset({"app", "physical_store"})


def validate_event(data: dict[str, Any], now: float) -> list[str]:
    reasons: list[str] = []
    name = data.get("event_name")
    if not isinstance(name, str) or not name.strip():
        reasons.append("event_name is required")
    elif len(name) > MAX_EVENT_NAME:
        reasons.append(f"event_name is longer than {MAX_EVENT_NAME} characters")
    event_time = data.get("event_time")
    if isinstance(event_time, bool) or not isinstance(event_time, int | float):
        reasons.append("event_time must be a Unix timestamp in seconds")
    elif event_time < now - MAX_AGE_DAYS * 86400:
        reasons.append(f"event_time is more than {MAX_AGE_DAYS} days old for TikTok")
    elif event_time > now + FUTURE_SKEW_SECONDS:
        reasons.append("event_time is in the future")
    source = data.get("action_source")
    if isinstance(source, str) and source in NOT_WEB:  # a rule may have set anything
        reasons.append("TikTok web events cannot have action_source app or physical_store")
    custom = data.get("custom_data")
    if isinstance(custom, dict):
        value = custom.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            reasons.append("custom_data.value must be a number for TikTok")
        currency = custom.get("currency")
        if currency is not None and (not isinstance(currency, str)
                                     or not CURRENCY.fullmatch(currency)):
            reasons.append("custom_data.currency must be a 3-letter ISO 4217 code for TikTok")
    return reasons


def expiry(data: dict[str, Any]) -> float:
    event_time = data.get("event_time")
    if isinstance(event_time, bool) or not isinstance(event_time, int | float):
        return 0.0  # an invalid event: never sent
    return float(event_time) + MAX_AGE_DAYS * 86400
