"""What every destination type reads the same way from a platform's HTTP answer."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import quote

import aiohttp

from ..errors import Retryable

__all__ = ["MAX_RETRY_AFTER", "Answer", "get_json", "masked", "post_json", "retry_after",
           "scrubbed"]

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


def scrubbed(text: str, *secrets: str) -> str:
    """The text with each secret, raw or percent-encoded (as in a URL), replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text


class Answer(NamedTuple):
    status: int
    body: bytes
    retry_after: str  # the Retry-After header, "" when absent


async def post_json(
    session: aiohttp.ClientSession, url: str, body: bytes, *, timeout: float,
    params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> Answer:
    """POST a JSON body and read the whole answer, whatever its status. Redirects are never
    followed (one would turn the POST into a GET without the events and carry the
    credentials elsewhere); a timeout or a network failure is Retryable, its reason free of
    `secrets`."""
    return await _request(session, "POST", url, body, timeout=timeout, params=params,
                          headers={"Content-Type": "application/json", **(headers or {})},
                          secrets=secrets)


async def get_json(
    session: aiohttp.ClientSession, url: str, *, timeout: float,
    params: Mapping[str, str] | None = None, secrets: tuple[str, ...] = (),
) -> Answer:
    """GET (a read that records nothing, e.g. checking a token) under post_json's rules."""
    return await _request(session, "GET", url, None, timeout=timeout, params=params,
                          headers={}, secrets=secrets)


async def _request(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes | None, *,
    timeout: float, params: Mapping[str, str] | None, headers: Mapping[str, str],
    secrets: tuple[str, ...],
) -> Answer:
    try:
        async with session.request(
            method, url, params=params or {}, data=body, headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False,
        ) as response:
            return Answer(response.status, await response.read(),
                          response.headers.get("Retry-After", ""))
    except TimeoutError:
        raise Retryable(f"no answer within {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise Retryable(scrubbed(f"connection failed: {type(exc).__name__}: {exc}",
                                 *secrets)) from None
