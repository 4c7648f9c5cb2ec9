"""The console's token check and test event for Meta (docs/meta-capi.md).

The token check reads the pixel with the token (Graph API `GET /{pixel-id}?fields=id,name`, or
`GET /me?fields=id` for a destination that takes the pixel each hit names): a read, so nothing is
recorded, and Meta answers it with the same error table as the events endpoint (190: the token
is invalid or expired; 10, 200-299: it may not reach the pixel). The test event is one `PageView`
sent with the destination's `test_event_code`, which Meta shows under Test events and does not
count; without a code nothing is sent, so a test never lands among real conversions.
"""

from __future__ import annotations

import hashlib
import secrets

import aiohttp
import orjson

from ..base import CannotTest
from ..http import get_json
from .sender import classify

__all__ = ["check_token", "test_event_body"]


async def check_token(session: aiohttp.ClientSession, endpoint: str, pixel_id: str, token: str,
                      timeout: float) -> str:
    """Meta's verdict on the token in words; a RelayError subclass when Meta refuses it."""
    url = f"{endpoint}/{pixel_id}" if pixel_id else f"{endpoint}/me"
    status, raw, _ = await get_json(session, url, timeout=timeout, secrets=(token,),
                                    params={"fields": "id,name" if pixel_id else "id",
                                            "access_token": token})
    if not 200 <= status < 300:
        raise classify(status, raw, token)
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict) or not answer.get("id"):
        return f"HTTP {status} without an id: check graph_url and api_version"
    if pixel_id:
        name = str(answer.get("name") or "")[:100]
        return f"the token reads pixel {answer['id']}" + (f" ({name})" if name else "")
    return "the token is valid (Meta answered /me); each hit's pixel is checked as it is sent"


def test_event_body(test_event_code: str, partner_agent: str, now: float) -> bytes:
    """One PageView for Meta's Test events: no person behind it (a fixed, hashed
    external_id)."""
    if not test_event_code:
        raise CannotTest("set test_event_code (from Events Manager, Test events) first: without "
                         "it a test event would count as a real one")
    event = {
        "event_name": "PageView", "event_time": int(now), "action_source": "website",
        "event_id": f"tag-gateway-test-{secrets.token_hex(8)}",
        "event_source_url": "https://tag-gateway.invalid/test-event",
        "user_data": {"external_id": [hashlib.sha256(b"tag-gateway test event").hexdigest()],
                      "client_user_agent": "tag-gateway test event"},
    }
    body: dict[str, object] = {"data": [event], "test_event_code": test_event_code}
    if partner_agent:
        body["partner_agent"] = partner_agent
    return orjson.dumps(body)
