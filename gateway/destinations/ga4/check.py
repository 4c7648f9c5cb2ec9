"""The console's test event for GA4 (docs/destinations.md, GA4): a verdict on the payload only.

GA4's Measurement Protocol answers 2xx to anything; Google documents a validation server
(`/debug/mp/collect`) that records nothing (its events show in no report) and answers
`validationMessages` for what it would refuse. The test event is one `page_view` of a made-up
client sent there with strict validation. Google also documents that the validation server
does not check the `api_secret`, and the Measurement Protocol itself answers 2xx whatever it
receives: so there is no token check, and the test event's verdict is about the payload, never
the secret.
"""

from __future__ import annotations

import secrets

import aiohttp
import orjson

from ...errors import Permanent
from .events import build_event
from .identity import session_id
from .sender import post, validation_messages

__all__ = ["NO_SECRET_CHECK", "test_event_body", "validate_test_event"]

NO_SECRET_CHECK = ("GA4 offers no check of its api_secret: its validation server does not "
                   "check it and the Measurement Protocol answers 2xx to whatever it receives; "
                   "watch the first events arrive in GA4 (Realtime, or DebugView with "
                   "debug_mode)")


def test_event_body(now: float, engagement_time_msec: int) -> bytes:
    """One page_view of a made-up client (no visitor behind it), strictly validated."""
    built = build_event({"event_name": "PageView", "event_time": int(now),
                         "event_source_url": "https://tag-gateway.invalid/test-event"},
                        session_id=session_id(int(now)),
                        engagement_time_msec=engagement_time_msec)
    return orjson.dumps({"client_id": f"{secrets.randbelow(10**9)}.{int(now)}",
                         "validation_behavior": "ENFORCE_RECOMMENDATIONS",
                         "events": [built.event]})


async def validate_test_event(session: aiohttp.ClientSession, url: str, measurement_id: str,
                              api_secret: str, body: bytes, timeout: float) -> str:
    """POST `body` to the validation server `url`; its verdict in words, Permanent with its
    messages when it finds problems."""
    _, raw = await post(session, url, measurement_id, api_secret, body, timeout)
    messages = validation_messages(raw)
    if messages:
        raise Permanent("the validation server refuses the event: " + "; ".join(messages))
    return ("the validation server accepts the event (nothing recorded); it does not check "
            "the api_secret")
