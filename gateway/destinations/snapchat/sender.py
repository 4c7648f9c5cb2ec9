"""One request to Snap's Conversions API v3 and its answer classified
(docs/destinations.md).

The access token travels in the query string as Snap documents (`?access_token=`); it never
reaches a log line or an error message (`_safe` scrubs it from anything that might echo it).
"""

from __future__ import annotations

import re

import aiohttp
import orjson

from ...errors import Permanent, RateLimited, RelayError, Retryable, TokenRejected
from ..http import masked, post_json, scrubbed
from ..http import retry_after as read_retry_after

__all__ = ["RATE_LIMIT_DELAY", "classify", "post_events"]

RATE_LIMIT_DELAY = 60.0  # when a 429 names no Retry-After
ADDRESS_DELAY = 300.0  # a redirect or a 4xx that is not Snap's: the address is wrong
MAX_MESSAGES = 5
_TOKEN_PARAM = re.compile(r"access_token=[^&\s'\"]*")


async def post_events(session: aiohttp.ClientSession, url: str, token: str, body: bytes,
                      timeout: float) -> None:
    """POST one batch; raise a RelayError subclass with a reason free of the token."""
    status, raw, retry_after = await post_json(session, url, body, timeout=timeout,
                                               params={"access_token": token}, secrets=(token,))
    error = classify(status, raw, token, retry_after)
    if error is not None:
        raise error


def classify(status: int, raw: bytes, token: str = "", retry_after: str = ""
             ) -> RelayError | None:
    """Snap's answer: None when the events were taken, else the error to raise."""
    answer = _answer(raw)
    reason = _safe(_describe(status, answer), token)
    if 200 <= status < 300:
        if str(answer.get("status", "")).upper() == "INVALID":
            return Permanent(reason)  # taken over HTTP, refused in the body
        return None
    if 300 <= status < 400:
        return Retryable(f"HTTP {status}: Snap answered with a redirect; check api_url "
                         "(https, no trailing path)", min_delay=ADDRESS_DELAY)
    if status == 429:
        return RateLimited(reason, min_delay=read_retry_after(retry_after) or RATE_LIMIT_DELAY)
    if status in (401, 403):
        return TokenRejected(reason)
    if status >= 500:
        return Retryable(reason)
    if status == 413:  # too large for something on the way: halve the batch
        return Permanent(f"HTTP {status}: the request is too large")
    if not answer:
        # Not Snap's answer shape (a 404 or 405 from something else): the address, not the
        # events; wait long, never split or dead-letter them.
        return Retryable(f"{reason} without a Conversions API answer: check api_url",
                         min_delay=ADDRESS_DELAY)
    return Permanent(reason)


def _answer(raw: bytes) -> dict[str, object]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _describe(status: int, answer: dict[str, object]) -> str:
    """`HTTP 400, INVALID: reason; error messages` from Snap's EventResponse or
    ValidateResponse (`status`, `reason`, `errors.error_msgs`, `event_logs[].errors`)."""
    parts = [f"HTTP {status}"]
    if answer.get("status"):
        parts.append(str(answer["status"]))
    text = str(answer.get("reason") or answer.get("message") or "")
    messages = _messages(answer.get("errors"))
    logs = answer.get("event_logs")
    for log in logs if isinstance(logs, list) else []:
        if isinstance(log, dict):
            messages += _messages(log.get("errors"))
    detail = "; ".join(dict.fromkeys(m for m in [text, *messages] if m))
    return ", ".join(parts) + (f": {masked(detail)[:500]}" if detail else "")


def _messages(errors: object) -> list[str]:
    if not isinstance(errors, dict):
        return []
    found = errors.get("error_msgs")
    return [str(m) for m in found[:MAX_MESSAGES]] if isinstance(found, list) else []


def _safe(text: str, token: str) -> str:
    return _TOKEN_PARAM.sub("access_token=***", scrubbed(text, token))
