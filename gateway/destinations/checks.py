"""Checks of an event that several platforms make the same way (each type says which apply)."""

from __future__ import annotations

import math
from typing import Any

from ..model import CURRENCY

__all__ = ["FUTURE_SKEW_SECONDS", "check_purchase", "check_time"]

FUTURE_SKEW_SECONDS = 60  # clocks differ a little: an event "from the future" within this is fine


def check_time(event_time: Any, now: float, max_age_days: int) -> list[str]:
    """event_time is Unix seconds, at most `max_age_days` old and not in the future."""
    if (isinstance(event_time, bool) or not isinstance(event_time, int | float)
            or not math.isfinite(event_time)):
        return ["event_time must be a Unix timestamp in seconds"]
    if event_time < now - max_age_days * 86400:
        return [f"event_time is more than {max_age_days} days old"]
    if event_time > now + FUTURE_SKEW_SECONDS:
        return ["event_time is in the future"]
    return []


def check_purchase(custom_data: Any) -> list[str]:
    """A Purchase carries a numeric value and a 3-letter currency."""
    custom = custom_data if isinstance(custom_data, dict) else {}
    reasons = []
    value = custom.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        reasons.append("Purchase events need custom_data.value as a number")
    currency = custom.get("currency")
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        reasons.append("Purchase events need custom_data.currency as a 3-letter ISO 4217 code")
    return reasons
