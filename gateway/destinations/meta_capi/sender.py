"""One request to the Conversions API, and Meta's answer classified (docs/meta-capi.md).

The body is spliced from the event JSON stored in the outbox (no re-encoding). The access token
travels in the query string as Meta documents; it is never put in a log line or an error
message (`_safe` scrubs it from anything that might echo the URL).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import aiohttp
import orjson

from ...errors import (
    DestinationRefused,
    Permanent,
    RateLimited,
    RelayError,
    Retryable,
    TokenRejected,
)
from ...storage import ClaimedRow
from ..http import post_json, scrubbed

__all__ = ["DESTINATION_CODES", "RATE_LIMIT_CODES", "TOKEN_CODES", "TRANSIENT_CODES",
           "answered", "batch_body", "classify", "post_batch"]

# Meta's error codes (docs/meta-capi.md has the table).
TRANSIENT_CODES = frozenset({1, 2})
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TOKEN_CODES = frozenset({190, 102})
# About the pixel, the app or the token's permissions, never one event: 3 (the app lacks the
# capability), 10 and 200-299 (permission denied), 803 (no object by that id).
DESTINATION_CODES = frozenset({3, 10, 803, *range(200, 300)})
# Code 100 ("invalid parameter") is about an event, except subcode 33: the object posted to
# (the pixel) does not exist, is out of the token's reach or does not take events.
OBJECT_SUBCODES = frozenset({33})
RATE_LIMIT_DELAY = 60.0
REDIRECT_DELAY = 300.0
_TOKEN_PARAM = re.compile(r"access_token=[^&\s'\"]*")
_TRACE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what an fbtrace_id looks like


def batch_body(rows: Sequence[ClaimedRow], test_event_code: str, partner_agent: str = "") -> bytes:
    """`{"data": [...], "test_event_code"?, ...}` spliced from the stored event JSON.

    Rows of one batch share their top-level fields (the worker groups them so); a destination's
    own `partner_agent` applies unless the events came with one."""
    fields: dict[str, object] = orjson.loads(rows[0].request_fields) if rows[0].request_fields \
        else {}
    if test_event_code:
        fields["test_event_code"] = test_event_code
    if partner_agent:
        fields.setdefault("partner_agent", partner_agent)
    body = b'{"data":[' + b",".join(row.payload for row in rows) + b"]"
    for key, value in fields.items():
        body += b"," + orjson.dumps(key) + b":" + orjson.dumps(value)
    return body + b"}"


async def post_batch(
    session: aiohttp.ClientSession, url: str, token: str, body: bytes, timeout: float
) -> str:
    """POST one batch; return Meta's answer in words (`answered`), or raise a RelayError
    subclass with a reason free of the token."""
    status, raw, _ = await post_json(session, url, body, timeout=timeout,
                                     params={"access_token": token}, secrets=(token,))
    if 200 <= status < 300:
        return answered(raw)
    if 300 <= status < 400:
        # A configuration problem, not a bad event: wait long, never dead-letter.
        raise Retryable(f"HTTP {status}: the Graph API answered with a redirect; check "
                        "graph_url (https, no trailing path)", min_delay=REDIRECT_DELAY)
    raise classify(status, raw, token)


def answered(raw: bytes) -> str:
    """An accepted batch's answer for the log: `events_received 3, fbtrace_id AbC` (and how
    many messages, never their text, which may quote an event)."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        return "no events_received in the answer"
    received = answer.get("events_received")
    parts = [f"events_received {received}" if isinstance(received, int)
             and not isinstance(received, bool) else "no events_received in the answer"]
    messages = answer.get("messages")
    if isinstance(messages, list) and messages:
        parts.append(f"{len(messages)} message{'s' if len(messages) != 1 else ''}")
    trace = answer.get("fbtrace_id")
    if isinstance(trace, str) and _TRACE.fullmatch(trace):
        parts.append(f"fbtrace_id {trace}")
    return ", ".join(parts)


def classify(status: int, raw: bytes, token: str = "") -> RelayError:
    """Meta's error table: transient, rate limit, token, or invalid."""
    error = _graph_error(raw)
    code = error.get("code")
    reason = _safe(_describe(status, error), token)
    trace = error.get("fbtrace_id")
    fbtrace_id = str(trace) if trace else None
    if status == 429 or code in RATE_LIMIT_CODES:
        return RateLimited(reason, min_delay=RATE_LIMIT_DELAY, fbtrace_id=fbtrace_id)
    if code in TOKEN_CODES:
        return TokenRejected(reason, fbtrace_id)
    if code in DESTINATION_CODES or (code == 100 and _about_the_object(error)):
        return DestinationRefused(reason, fbtrace_id)
    if status >= 500 or code in TRANSIENT_CODES or error.get("is_transient") is True:
        return Retryable(reason, fbtrace_id=fbtrace_id)
    if not error:
        # A 4xx without Graph's error body (404, 405 ...) is the address, not the events:
        # wait long, never split or dead-letter them.
        return Retryable(f"{reason} without a Graph API error: check graph_url and "
                         "api_version", min_delay=REDIRECT_DELAY)
    return Permanent(reason, fbtrace_id)


def _about_the_object(error: dict[str, object]) -> bool:
    """Code 100 about the pixel itself: subcode 33, or Graph's "Unsupported post request"
    (a GraphMethodException without a subcode), which names no event."""
    subcode = error.get("error_subcode")
    if subcode is not None:
        return subcode in OBJECT_SUBCODES
    return error.get("type") == "GraphMethodException"


def _safe(text: str, token: str) -> str:
    """The text with the token removed, raw or percent-encoded, wherever it appears."""
    return _TOKEN_PARAM.sub("access_token=***", scrubbed(text, token))


def _graph_error(raw: bytes) -> dict[str, object]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _describe(status: int, error: dict[str, object]) -> str:
    if not error:
        return f"HTTP {status}"
    parts = [f"HTTP {status}", f"code {error.get('code')}"]
    if error.get("error_subcode"):
        parts.append(f"subcode {error['error_subcode']}")
    message = str(error.get("error_user_msg") or error.get("message") or "")[:500]
    trace = error.get("fbtrace_id")
    return ", ".join(parts) + (f": {message}" if message else "") + (
        f" (fbtrace_id {trace})" if trace else ""
    )
