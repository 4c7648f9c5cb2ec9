"""Turn one event a backend sent (a CAPI `data` element) into an Event for the pipeline.

The event is kept as received; the gateway only fills `event_id` when it is missing (Meta
deduplicates browser and server copies by it), rewrites tolerated forms of documented fields to
their documented types (fieldtypes.py) and, with `identity.truncate_ip`, shortens
`user_data.client_ip_address` before anything is stored.

Two kinds of refusal. An event without the shape every later step relies on (an event name, a
time that is a number, an event_id that is text, an action_source that is text, objects where
objects belong: user_data must be one for its values to be hashed) is refused and never
stored. An event with any other documented field of the wrong type, or a client IP that is no
address, is refused too but kept: an `invalid` row with its reasons, once prepared (hashed)
like any other (`keep_invalid`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from ..identity.trustedproxies import parse_ip, truncate_ip
from ..model import MAX_EVENT_NAME, Context, Event
from ..pipeline import Route
from .fieldtypes import check_fields
from .hitevent import CONTROL, MAX_EVENT_ID, MAX_SAFE_INTEGER, new_event_id

__all__ = ["build_server_event", "keep_invalid", "request_fields"]

_MAX_IP_TEXT = 64
# Later steps rely on these being objects (hashing on user_data, the destination types' checks
# on the others): an event where one is not is refused before any runs.
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
) -> tuple[Event | None, list[str]]:
    """The Event for one received CAPI event and the reasons it is refused (none: it is fine);
    no Event when it cannot even be stored."""
    refused = check_fields(data)  # first: a time sent as text becomes a number
    unstorable = _shape_problems(data)
    if unstorable:
        return None, unstorable
    event_id = data.get("event_id")
    if event_id is None or event_id == "":
        data["event_id"] = make_event_id()
    elif isinstance(event_id, int):
        data["event_id"] = str(event_id)
    user_data: dict[str, Any] = data.get("user_data") or {}
    ip = _client_ip(user_data, truncate, refused)
    agent = user_data.get("client_user_agent")
    context = Context(
        source="server", pixel_id=pixel_id, ip=ip,
        user_agent=agent if isinstance(agent, str) else None,
        test_event_code=str(forwarded.get("test_event_code", "")),
        request_fields=fields_json,
    )
    return Event(data=data, context=context), refused


def keep_invalid(event: Event, reasons: list[str]) -> list[str]:
    """Make a prepared event an `invalid` row with these reasons, whatever the rules and the
    destinations said: the gateway refused it before either matters. Returns the reasons."""
    event.context.decision = None  # a rule's drop would leave no row to inspect
    event.context.route = Route([], [], reasons, [])
    return reasons


def _client_ip(user_data: dict[str, Any], truncate: bool, refused: list[str]) -> str | None:
    """The client IP for the context (truncated in user_data too, if asked), or None."""
    ip = user_data.get("client_ip_address")
    if ip is None or ip == "":
        return None
    address = parse_ip(ip) if isinstance(ip, str) and len(ip) <= _MAX_IP_TEXT else None
    if address is None:
        if isinstance(ip, str):  # a wrong type is already among the reasons
            refused.append("user_data.client_ip_address must be an IPv4 or IPv6 address")
        if truncate:  # nothing shows it is no full address: it is not stored
            del user_data["client_ip_address"]
        return None
    if truncate:
        ip = user_data["client_ip_address"] = str(truncate_ip(address))
    return ip


def _shape_problems(data: dict[str, Any]) -> list[str]:
    reasons = []
    name = data.get("event_name")
    if not isinstance(name, str) or not name.strip():
        reasons.append("event_name is required (text)")
    elif len(name) > MAX_EVENT_NAME or CONTROL.search(name):
        reasons.append(f"event_name must be at most {MAX_EVENT_NAME} printable characters")
    event_time = data.get("event_time")
    if (isinstance(event_time, bool) or not isinstance(event_time, int | float)
            or not math.isfinite(event_time) or abs(event_time) > MAX_SAFE_INTEGER):
        reasons.append("event_time must be a Unix timestamp in seconds")
    event_id = data.get("event_id")
    if isinstance(event_id, bool) or not isinstance(event_id, str | int | None):
        reasons.append("event_id must be text")
    elif isinstance(event_id, str) and (len(event_id) > MAX_EVENT_ID or CONTROL.search(event_id)):
        reasons.append(f"event_id must be at most {MAX_EVENT_ID} printable characters")
    source = data.get("action_source")
    if source is not None and not isinstance(source, str):
        reasons.append("action_source must be text")
    for key in _OBJECT_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            reasons.append(f"{key} must be an object")
    return reasons
