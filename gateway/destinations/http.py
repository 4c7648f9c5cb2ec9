"""What every destination type reads the same way from a platform's HTTP answer."""

from __future__ import annotations

import email.utils
import re
import time

__all__ = ["MAX_RETRY_AFTER", "masked", "retry_after"]

MAX_RETRY_AFTER = 3600.0  # a platform's Retry-After is honoured up to an hour
_SECONDS = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit also takes "²"
# What a platform's message may echo of an event: e-mail addresses, phone numbers, the query of
# a page URL (which can carry both).
_EMAIL = re.compile(r"[^\s@\"',;:<>]+@[^\s@\"',;:<>]+")
_PHONE = re.compile(r"\+?\d[\d ()-]{6,}\d")
_QUERY = re.compile(r"(https?://[^\s?#\"']*)\?[^\s#\"']*")


def masked(text: str) -> str:
    """A platform's message, safe to log and store: personal data it may echo masked."""
    text = _QUERY.sub(r"\1?(query)", text)
    return _PHONE.sub("(number)", _EMAIL.sub("(email)", text))


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
