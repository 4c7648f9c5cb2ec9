"""What every destination type reads the same way from a platform's HTTP answer."""

from __future__ import annotations

import email.utils
import re
import time

__all__ = ["MAX_RETRY_AFTER", "retry_after"]

MAX_RETRY_AFTER = 3600.0  # a platform's Retry-After is honoured up to an hour
_SECONDS = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit also takes "²"


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After (whole seconds or an HTTP date) as a delay within [0, MAX_RETRY_AFTER];
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - (
                time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
