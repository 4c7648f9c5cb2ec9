"""The console's token check and test event for Snap (docs/destinations.md, Snapchat).

Snap documents `POST /v3/{pixel_id}/events/validate` (its Test Event Tool): the events are
checked and shown among the pixel's test events, none is counted as a conversion. Both the test
event and the token check are one `PAGE_VIEW` sent there with the token, with no person behind
it: a refused token answers 401 (or 403) and an event Snap refuses `status: INVALID`.
"""

from __future__ import annotations

import secrets

import aiohttp
import orjson

from ..http import post_json
from .events import snap_event
from .sender import classify

__all__ = ["TEST_IP", "validate_test_event"]

TEST_IP = "192.0.2.1"  # a documentation address (RFC 5737): no visitor's


async def validate_test_event(session: aiohttp.ClientSession, url: str, token: str,
                              now: float, timeout: float) -> str:
    """POST one test PAGE_VIEW to the validate endpoint `url`; Snap's verdict in words, a
    RelayError subclass when Snap refuses it."""
    event = snap_event({
        "event_name": "PageView", "event_time": int(now), "action_source": "website",
        "event_id": f"tag-gateway-test-{secrets.token_hex(8)}",
        "event_source_url": "https://tag-gateway.invalid/test-event",
        "user_data": {"client_ip_address": TEST_IP,
                      "client_user_agent": "tag-gateway test event"},
    }, {})
    status, raw, retry_after = await post_json(
        session, url, orjson.dumps({"data": [event]}), timeout=timeout,
        params={"access_token": token}, secrets=(token,))
    error = classify(status, raw, token, retry_after)
    if error is not None:
        raise error
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    said = answer.get("status") if isinstance(answer, dict) else None
    return f"{said or f'HTTP {status}'} (validate endpoint: checked, not counted)"
