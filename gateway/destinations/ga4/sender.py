"""One Measurement Protocol request, and the answer classified (docs/destinations.md).

GA4 answers 2xx whenever it received the request, even when it then drops the events: the
events were checked against its limits before (events.py). What is left to classify is the way
there: network errors, timeouts and 5xx are retried, 429 slows the destination down, 401/403
(a proxy or a future GA4 refusing the api_secret) pause it, a redirect or another 4xx is the
address (wait long, never dead-letter), 413 is a body too large (split). The api_secret travels
in the query string as Google documents; `_safe` scrubs it from anything that might echo it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from ...errors import Permanent, RateLimited, RelayError, Retryable, TokenRejected
from ..http import masked, post_json, scrubbed
from ..http import retry_after as read_retry_after

__all__ = ["MAX_BODY_BYTES", "classify", "post", "validation_messages"]

MAX_BODY_BYTES = 130_000  # "The post body must be smaller than 130kB"
RATE_LIMIT_DELAY = 60.0
ADDRESS_DELAY = 300.0
_SECRET_PARAM = re.compile(r"api_secret=[^&\s'\"]*")


async def post(session: aiohttp.ClientSession, url: str, measurement_id: str, api_secret: str,
               body: bytes, timeout: float) -> tuple[int, bytes]:
    """POST one request; the status and body of a 2xx answer, else a RelayError."""
    if len(body) >= MAX_BODY_BYTES:
        raise Permanent(f"the request body is {len(body)} bytes; GA4 takes less than "
                        f"{MAX_BODY_BYTES} bytes")
    status, raw, retry_after = await post_json(
        session, url, body, timeout=timeout,
        params={"measurement_id": measurement_id, "api_secret": api_secret},
        secrets=(api_secret,))
    if 200 <= status < 300:
        return status, raw
    raise classify(status, raw, retry_after, api_secret)


def classify(status: int, raw: bytes, retry_after: str = "", api_secret: str = ""
             ) -> RelayError:
    """What a non-2xx answer means for the rows of the request."""
    detail = masked(_safe(raw[:200].decode("utf-8", "replace").strip(), api_secret))
    reason = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429:
        delay = read_retry_after(retry_after) or RATE_LIMIT_DELAY
        return RateLimited(reason, min_delay=max(delay, 1.0))
    if status in (401, 403):
        return TokenRejected(reason)
    if status >= 500:
        return Retryable(reason)
    if status == 413:
        return Permanent(reason + " (the request is too large for GA4)")
    # A redirect, 400, 404 ...: GA4 answers 2xx to any request it receives, so this is the
    # address (api_url), not the events: wait long, never split or dead-letter them.
    return Retryable(f"{reason}; GA4 answers 2xx to every request it receives: check api_url",
                     min_delay=ADDRESS_DELAY)


def validation_messages(raw: bytes) -> list[str]:
    """The validation server's `validationMessages`, one readable line each."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ["the validation server's answer is not JSON"]
    messages = body.get("validationMessages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return ["the validation server's answer has no validationMessages"]
    return [_message(message) for message in messages if isinstance(message, Mapping)]


def _message(message: Mapping[str, Any]) -> str:
    code = message.get("validationCode") or "INVALID"
    path = message.get("fieldPath")
    description = message.get("description") or ""
    return f"{code}" + (f" at {path}" if path else "") + (f": {description}" if description
                                                         else "")


def _safe(text: str, secret: str) -> str:
    """The text with the api_secret removed, raw or percent-encoded, wherever it appears."""
    return _SECRET_PARAM.sub("api_secret=***", scrubbed(text, secret))
