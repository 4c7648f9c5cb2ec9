"""One request to TikTok's Events API, and TikTok's answer classified.

TikTok answers HTTP 200 with a JSON envelope `{"code", "message", "request_id", "data"}`: code 0
is success, any other code an error (the table in docs/destinations.md). The access token
travels in the `Access-Token` header; it is scrubbed from anything raised.
"""

from __future__ import annotations

import aiohttp
import orjson

from ...errors import Permanent, RateLimited, RelayError, Retryable, TokenRejected
from ..http import masked, post_json, scrubbed

__all__ = ["RATE_LIMIT_CODES", "TOKEN_CODES", "TRANSIENT_CODES", "classify", "post_batch"]

# TikTok's return codes (TikTok API for Business, "Return codes").
TOKEN_CODES = frozenset({
    40001,  # no permission to operate (the token may not send for this pixel)
    40104,  # the access token is empty
    40105,  # the access token is incorrect or has been revoked
    40106,  # the core user is invalid
})
RATE_LIMIT_CODES = frozenset({
    40016,  # app rate limit
    40100,  # requests made too frequently
    40101,  # requests made too frequently
    40102,  # requests made too frequently for a certain field value
    40133,  # advertiser QPS limit
})
TRANSIENT_CODES = frozenset({
    40200,  # task error
    40201,  # task not ready
    40202,  # write or update conflict
    40700,  # internal service validation error
    50000,  # system error
    50002,  # error processing the request on TikTok's side
    51305,  # satellite service error
    60001,  # the system is in maintenance
})
RATE_LIMIT_DELAY = 60.0
ADDRESS_DELAY = 300.0  # a misdirected request: wait long, never split or dead-letter
MAX_MESSAGE = 300


async def post_batch(session: aiohttp.ClientSession, url: str, token: str, body: bytes,
                     timeout: float) -> None:
    """POST one batch; raise a RelayError subclass with a reason free of the token."""
    status, raw, _ = await post_json(session, url, body, timeout=timeout,
                                     headers={"Access-Token": token}, secrets=(token,))
    error = classify(status, raw, token)
    if error is not None:
        raise error


def classify(status: int, raw: bytes, token: str = "") -> RelayError | None:
    """None when TikTok took the batch; else the error for its answer."""
    envelope = _envelope(raw)
    code = envelope.get("code")
    if 300 <= status < 400:
        return Retryable(f"HTTP {status}: the Events API answered with a redirect; check "
                         "api_url (https, no path)", min_delay=ADDRESS_DELAY)
    if status == 429:
        return RateLimited(_describe(status, envelope, token), min_delay=RATE_LIMIT_DELAY)
    if status >= 500:
        return Retryable(_describe(status, envelope, token))
    if status == 413:  # too large for something on the way: halve the batch
        return Permanent(f"HTTP {status}: the request is too large")
    if isinstance(code, bool) or not isinstance(code, int):
        # No TikTok envelope: not the Events API (a proxy page, a 404): the address is wrong.
        return Retryable(f"HTTP {status} without an Events API answer: check api_url",
                         min_delay=ADDRESS_DELAY)
    if code == 0 and 200 <= status < 300:
        return None
    reason = _describe(status, envelope, token)
    if code in RATE_LIMIT_CODES:
        return RateLimited(reason, min_delay=RATE_LIMIT_DELAY)
    if code in TOKEN_CODES:
        return TokenRejected(reason)
    if code in TRANSIENT_CODES or code >= 50000:
        return Retryable(reason)
    return Permanent(reason)


def _envelope(raw: bytes) -> dict[str, object]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _describe(status: int, envelope: dict[str, object], token: str) -> str:
    """`HTTP 200, code 40002: message (request_id ...)`, safe to store: no token, no e-mail
    address or phone number TikTok might echo."""
    parts = [f"HTTP {status}"]
    if "code" in envelope:
        parts.append(f"code {envelope['code']}")
    text = ", ".join(parts)
    message = str(envelope.get("message") or "")[:MAX_MESSAGE]
    if message:
        text += f": {masked(message)}"
    if envelope.get("request_id"):
        text += f" (request_id {envelope['request_id']})"
    return scrubbed(text, token)
