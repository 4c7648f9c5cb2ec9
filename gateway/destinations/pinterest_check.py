"""The console's token check and test event for Pinterest (docs/destinations.md, Pinterest).

Pinterest documents `?test=true` on the Send conversions endpoint: the events are validated and
answered as usual but not recorded. Both the test event and the token check are one such
request carrying one `page_visit` with no person behind it; a refused token answers 401 (code
2), a token that may not send to the ad account 403 (code 29). We found no documented read of
the ad account a conversion token is allowed, so the check is that test request too.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import orjson

__all__ = ["TEST_IP", "test_event_body", "verdict"]

TEST_IP = "192.0.2.1"  # a documentation address (RFC 5737): no visitor's


def test_event_body(now: float) -> bytes:
    """One page_visit in Pinterest's wire shape (a fixed, hashed external_id; Pinterest needs
    em, or an IP address with a user agent)."""
    event: dict[str, Any] = {
        "event_name": "page_visit", "action_source": "web", "event_time": int(now),
        "event_id": f"tag-gateway-test-{secrets.token_hex(8)}",
        "event_source_url": "https://tag-gateway.invalid/test-event",
        "user_data": {"external_id": [hashlib.sha256(b"tag-gateway test event").hexdigest()],
                      "client_ip_address": TEST_IP,
                      "client_user_agent": "tag-gateway test event"},
    }
    return orjson.dumps({"data": [event]})


def verdict(raw: bytes) -> str:
    """Pinterest's answer to an accepted test request, in words."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return "accepted (test=true: nothing recorded)"
    return (f"num_events_received {body.get('num_events_received')}, num_events_processed "
            f"{body.get('num_events_processed')} (test=true: nothing recorded)")
