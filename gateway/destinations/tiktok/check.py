"""The console's test event for TikTok (docs/destinations.md, TikTok).

TikTok documents `test_event_code` on the Events API (from Events Manager's Test events tab), as
Meta does: an event sent with it shows there as a test. The test event is one `Pageview` with
the destination's code and no person behind it; without a code nothing is sent, so a test never
lands among real conversions. There is no token check: the reads TikTok documents (its pixel
list) need an advertiser id, which a destination does not have.
"""

from __future__ import annotations

import hashlib
import secrets

import aiohttp
import orjson

from ..base import CannotTest
from ..http import post_json
from .sender import classify
from .wire import request_body, tiktok_event

__all__ = ["TEST_IP", "send_test_event"]

TEST_IP = "192.0.2.1"  # a documentation address (RFC 5737): no visitor's


async def send_test_event(session: aiohttp.ClientSession, url: str, token: str, pixel_code: str,
                          test_event_code: str, now: float, timeout: float) -> str:
    """POST one test Pageview; TikTok's verdict in words, a RelayError subclass when TikTok
    refuses it, CannotTest without a test_event_code."""
    if not test_event_code:
        raise CannotTest("set test_event_code (from Events Manager, Test events) first: without "
                         "it a test event would count as a real one")
    event = tiktok_event({
        "event_name": "PageView", "event_time": int(now),
        "event_id": f"tag-gateway-test-{secrets.token_hex(8)}",
        "event_source_url": "https://tag-gateway.invalid/test-event",
        "user_data": {"external_id": [hashlib.sha256(b"tag-gateway test event").hexdigest()],
                      "client_ip_address": TEST_IP,
                      "client_user_agent": "tag-gateway test event"},
    }, {})
    status, raw, _ = await post_json(
        session, url, request_body([event], pixel_code, test_event_code), timeout=timeout,
        headers={"Access-Token": token}, secrets=(token,))
    error = classify(status, raw, token)
    if error is not None:
        raise error
    answer = orjson.loads(raw)  # classify found TikTok's envelope
    return (f"code 0: {answer.get('message') or 'OK'} (request_id {answer.get('request_id')}); "
            f"shown under Test events with test_event_code {test_event_code}")
