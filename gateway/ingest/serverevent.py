"""Turn one event a backend sent (a CAPI `data` element) into an Event for the pipeline.

The event is kept as received; the gateway only fills `event_id` when it is missing (Meta
deduplicates browser and server copies by it) and, with `identity.truncate_ip`, shortens
`user_data.client_ip_address` before anything is stored. Problems that make an event impossible
to store faithfully (no event name, a time that is not a number, user_data that is not an
object) come back as reasons: the event is refused and never stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from ..identity.trustedproxies import parse_ip, truncate_ip
from ..model import Context, Event
from .hitevent import MAX_EVENT_ID, MAX_SAFE_INTEGER, new_event_id

__all__ = ["build_server_event", "request_fields"]

_MAX_IP_TEXT = 64
_OBJECT_FIELDS = ("user_data", "custom_data", "app_data", "original_event_data",
                  "attribution_data")


def request_fields(forwarded: dict[str, Any]) -> str:
    """The forwarded top-level fields other than test_event_code, as a sorted JSON object."""
    rest = {name: value for name, value in forwarded.items() if name != "test_event_code"}
    return orjson.dumps(rest, option=orjson.OPT_SORT_KEYS).decode() if rest else ""


def build_server_event(
    data: dict[str, Any],
    *,
    pixel_id: str,
    now: float,
    forwarded: dict[str, Any],
    fields_json: str,
    truncate: bool = False,
    make_event_id: Callable[[], str] = new_event_id,
) -> Event | list[str]:
    """The Event for one received CAPI event, or the reasons it cannot be stored."""
    reasons = _shape_problems(data)
    if reasons:
        return reasons
    event_id = data.get("event_id")
    if event_id is None or event_id == "":
        data["event_id"] = make_event_id()
    elif isinstance(event_id, int):
        data["event_id"] = str(event_id)
    user_data: dict[str, Any] = data.get("user_data") or {}
    ip = user_data.get("client_ip_address") or None
    if ip is not None:
        address = parse_ip(ip) if isinstance(ip, str) and len(ip) <= _MAX_IP_TEXT else None
        if address is None:
            return ["user_data.client_ip_address must be an IPv4 or IPv6 address"]
        if truncate:
            ip = user_data["client_ip_address"] = str(truncate_ip(address))
    agent = user_data.get("client_user_agent")
    if agent is not None and not isinstance(agent, str):
        return ["user_data.client_user_agent must be text"]
    context = Context(
        source="server", pixel_id=pixel_id, ip=ip, user_agent=agent,
        test_event_code=str(forwarded.get("test_event_code", "")),
        request_fields=fields_json,
    )
    return Event(data=data, context=context)


def _shape_problems(data: dict[str, Any]) -> list[str]:
    reasons = []
    name = data.get("event_name")
    if not isinstance(name, str) or not name.strip():
        reasons.append("event_name is required (text)")
    event_time = data.get("event_time")
    if (isinstance(event_time, bool) or not isinstance(event_time, int | float)
            or not math.isfinite(event_time) or abs(event_time) > MAX_SAFE_INTEGER):
        reasons.append("event_time must be a Unix timestamp in seconds")
    event_id = data.get("event_id")
    if isinstance(event_id, bool) or not isinstance(event_id, str | int | None):
        reasons.append("event_id must be text")
    elif isinstance(event_id, str) and len(event_id) > MAX_EVENT_ID:
        reasons.append(f"event_id must be at most {MAX_EVENT_ID} characters")
    source = data.get("action_source")
    if source is not None and not isinstance(source, str):
        reasons.append("action_source must be text")
    for key in _OBJECT_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            reasons.append(f"{key} must be an object")
    return reasons
