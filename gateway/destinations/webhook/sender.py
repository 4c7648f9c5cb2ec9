"""One signed POST to a webhook receiver, and its answer classified (docs/destinations.md).

The body is `{"events": [...]}`: each element the stored event JSON (user data already hashed
Meta's way) with the gateway's context for it under one reserved key, `_gateway`. The body is
signed as it is sent: `X-Gateway-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, beside
`X-Gateway-Timestamp` (Unix seconds, not part of the signed material).

Nothing raised here carries the secret, a custom header's value, the URL's query or a value of
the events' user data: the receiver's answer is cut to a short excerpt and scrubbed of them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from ...errors import Permanent, RateLimited, RelayError, Retryable, TokenRejected
from ...storage import ClaimedRow
from ..http import retry_after

__all__ = ["RESERVED_KEY", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "batch_body", "batch_events",
           "classify", "excerpt", "post_batch", "retry_after", "scrubbed", "sensitive_values",
           "sign"]

RESERVED_KEY = "_gateway"  # Meta's event fields never start with "_"
SIGNATURE_HEADER = "X-Gateway-Signature"
TIMESTAMP_HEADER = "X-Gateway-Timestamp"
USER_AGENT = "tag-gateway-webhook/1"
RATE_LIMIT_DELAY = 60.0  # a 429 without Retry-After
ADDRESS_DELAY = 300.0  # redirects, 404/405/410: the url is wrong, not the events
ADDRESS_STATUSES = frozenset({404, 405, 410})
ANSWER_BYTES = 4096  # read at most this much of an answer
EXCERPT_CHARS = 200
_MESSAGE_KEYS = ("message", "error", "detail", "reason", "description", "title")


def sign(secret: str, body: bytes) -> str:
    """The X-Gateway-Signature value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def batch_events(rows: Sequence[ClaimedRow], destination: str) -> list[dict[str, Any]]:
    """The stored events, each with its context under `_gateway`."""
    events = []
    for row in rows:
        event = orjson.loads(row.payload)
        if not isinstance(event, dict):
            raise Permanent("the stored event is not a JSON object")
        context = orjson.loads(row.context) if row.context else {}
        event[RESERVED_KEY] = {
            "destination": destination,
            "pixel_id": row.pixel_id,
            "test_event_code": row.test_event_code,
            "click_ids": context.get("click_ids") or {},
            "cookies": context.get("cookies") or {},
            "consent": context.get("consent") or {},
        }
        events.append(event)
    return events


def batch_body(events: Sequence[dict[str, Any]]) -> bytes:
    """The raw body that is signed and sent."""
    return orjson.dumps({"events": events})


async def post_batch(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    secret: str,
    headers: Mapping[str, str],
    timeout: float,
    scrub: Sequence[str],
    clock: Callable[[], float] = time.time,
) -> None:
    """POST one signed batch; raise a RelayError subclass with a reason free of `scrub`."""
    sent = {"User-Agent": USER_AGENT, **headers,
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, body),
            TIMESTAMP_HEADER: str(int(clock()))}
    try:
        async with session.post(
            url,
            data=body,
            headers=sent,
            timeout=aiohttp.ClientTimeout(total=timeout),
            # A redirect would replay the signed events to another address (or drop them in
            # a GET): never follow one.
            allow_redirects=False,
        ) as response:
            status = response.status
            answer = await response.content.read(ANSWER_BYTES)
            content_type = response.headers.get("Content-Type", "")
            wait = retry_after(response.headers.get("Retry-After"), clock())
    except TimeoutError:
        raise Retryable(f"no answer within {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise Retryable(scrubbed(f"connection failed: {type(exc).__name__}: {exc}",
                                 scrub)) from None
    if 200 <= status < 300:
        return
    raise classify(status, excerpt(answer, content_type, scrub), wait)


def classify(status: int, text: str, wait: float | None) -> RelayError:
    """What an answer other than 2xx means (`text`: a safe excerpt; `wait`: Retry-After)."""
    reason = f"HTTP {status}" + (f": {text}" if text else "")
    if 300 <= status < 400:
        return Retryable(f"HTTP {status}: the receiver answered with a redirect, which is not "
                         "followed; check url", min_delay=ADDRESS_DELAY)
    if status == 429:
        return RateLimited(reason, min_delay=RATE_LIMIT_DELAY if wait is None else wait)
    if status in (401, 403):
        return TokenRejected(reason)
    if status in ADDRESS_STATUSES:
        return Retryable(f"{reason} (the address, not the events: check url)",
                         min_delay=ADDRESS_DELAY)
    if status == 408 or not 400 <= status < 500:
        return Retryable(reason, min_delay=wait or 0.0)
    return Permanent(reason)


def excerpt(answer: bytes, content_type: str, scrub: Sequence[str]) -> str:
    """A short, one-line excerpt of a receiver's answer, safe to log and store: a JSON
    answer's message when it has one, else its text; binary answers only by their size."""
    if not answer.strip():
        return ""
    kind = content_type.split(";")[0].strip().lower()
    if kind and not (kind.startswith("text/") or "json" in kind or "xml" in kind):
        return f"({len(answer)} bytes of {kind[:40]})"
    text = answer.decode("utf-8", "replace")
    try:
        text = _message(orjson.loads(answer)) or text
    except orjson.JSONDecodeError:
        pass
    text = re.sub(r"[\s\x00-\x1f\x7f]+", " ", scrubbed(text, scrub)).strip()
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 3] + "..."


def _message(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        for key in _MESSAGE_KEYS:
            found = _message(body.get(key))
            if found:
                return found
    return ""


def scrubbed(text: str, scrub: Iterable[str]) -> str:
    """The text with every value of `scrub` (longest first) replaced by ***."""
    for value in sorted({v for v in scrub if len(v) >= 3}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def sensitive_values(events: Iterable[dict[str, Any]]) -> list[str]:
    """What a batch's events must not leak through an echoed answer: every text in their
    user_data and in the click ids and cookies of their context."""
    found: list[str] = []
    for event in events:
        context = event.get(RESERVED_KEY, {})
        for part in (event.get("user_data"), context.get("click_ids"), context.get("cookies")):
            _texts(part, found)
    return found


def _texts(value: Any, found: list[str]) -> None:
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _texts(item, found)
    elif isinstance(value, list):
        for item in value:
            _texts(item, found)
