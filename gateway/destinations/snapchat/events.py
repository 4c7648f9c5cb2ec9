"""Snap's side of an event (docs/destinations.md): its event names, action sources,
the rules an event must meet, and the wire format built from the stored Meta-shaped event.

Snap's normalization of the identifiers it takes (em: trimmed, lower case; ph: digits with the
country code, no `+`, no leading `00` or trunk `0`; fn/ln/ct/st/zp/country: lower case) gives
the same text as Meta's (normalize.py), so the SHA-256 hashes already in the stored user_data
are reused as they are; only their shape changes (em/ph and the other hashed keys as lists).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...model import MAX_EVENT_NAME, URL
from ..checks import check_purchase, check_time

__all__ = ["ACTION_SOURCES", "EVENT_NAMES", "MAX_AGE_DAYS", "SNAP_EVENTS", "expiry",
           "snap_event", "snap_event_name", "validate_event"]

# Meta's standard event names -> Snap's Conversions API v3 names. Lead goes to SIGN_UP as
# Snap's own server-side tag maps a lead; Schedule to RESERVE. Any other name is sent as it
# is and must then be one of Snap's own (SNAP_EVENTS).
EVENT_NAMES: dict[str, str] = {
    "PageView": "PAGE_VIEW",
    "ViewContent": "VIEW_CONTENT",
    "AddToCart": "ADD_CART",
    "AddToWishlist": "ADD_TO_WISHLIST",
    "InitiateCheckout": "START_CHECKOUT",
    "AddPaymentInfo": "ADD_BILLING",
    "Purchase": "PURCHASE",
    "Lead": "SIGN_UP",
    "CompleteRegistration": "SIGN_UP",
    "Search": "SEARCH",
    "Subscribe": "SUBSCRIBE",
    "StartTrial": "START_TRIAL",
    "Schedule": "RESERVE",
}

# Snap's event names (Conversions API parameters, "event_name").
SNAP_EVENTS = frozenset({
    "PAGE_VIEW", "VIEW_CONTENT", "ADD_CART", "ADD_TO_WISHLIST", "SIGN_UP", "SEARCH", "PURCHASE",
    "ADD_BILLING", "COMPLETE_TUTORIAL", "SUBSCRIBE", "AD_CLICK", "AD_VIEW", "START_CHECKOUT",
    "RATE", "LIST_VIEW", "LEVEL_COMPLETE", "ACHIEVEMENT_UNLOCKED", "SPENT_CREDITS", "SAVE",
    "SHARE", "INVITE", "LOGIN", "RESERVE", "START_TRIAL", "APP_INSTALL", "APP_OPEN",
    "CUSTOM_EVENT_1", "CUSTOM_EVENT_2", "CUSTOM_EVENT_3", "CUSTOM_EVENT_4", "CUSTOM_EVENT_5",
})

# Meta's action_source -> Snap's (WEB, MOBILE_APP, OFFLINE).
ACTION_SOURCES: dict[str, str] = {
    "website": "WEB",
    "app": "MOBILE_APP",
    "physical_store": "OFFLINE",
    "phone_call": "OFFLINE",
    "email": "OFFLINE",
    "chat": "OFFLINE",
    "business_messaging": "OFFLINE",
    "system_generated": "OFFLINE",
    "other": "OFFLINE",
}

MAX_AGE_DAYS = 37  # Snap takes events up to 37 days old

# Hashed user_data keys Snap takes (each a list of SHA-256 hex strings), and the clear ones.
HASHED_KEYS = ("em", "ph", "fn", "ln", "ge", "ct", "st", "zp", "country", "external_id")
CLEAR_KEYS = ("client_ip_address", "client_user_agent")

# custom_data keys Snap documents (anything else Meta carries is left out).
CUSTOM_KEYS = frozenset({
    "currency", "value", "content_ids", "content_category", "content_type", "contents",
    "num_items", "order_id", "search_string", "status", "brands", "sign_up_method",
    "delivery_category",
})
CONTENT_KEYS = ("id", "quantity", "item_price", "delivery_category")


def snap_event_name(name: str) -> str:
    return EVENT_NAMES.get(name, name)


def validate_event(data: dict[str, Any], now: float) -> list[str]:
    """Every reason Snap would refuse this event (fields, never values)."""
    reasons: list[str] = []
    name = data.get("event_name")
    if not isinstance(name, str) or not name.strip():
        reasons.append("event_name is required")
    elif len(name) > MAX_EVENT_NAME:
        reasons.append(f"event_name is longer than {MAX_EVENT_NAME} characters")
    elif snap_event_name(name) not in SNAP_EVENTS:
        reasons.append("event_name has no Snapchat equivalent (use a Meta standard name Snap "
                       "maps, or one of Snap's names such as CUSTOM_EVENT_1)")

    source = data.get("action_source")
    if source not in ACTION_SOURCES:
        reasons.append("action_source must be one of " + ", ".join(sorted(ACTION_SOURCES)))
    reasons += check_time(data.get("event_time"), now, MAX_AGE_DAYS)

    user_data = data.get("user_data")
    user = user_data if isinstance(user_data, dict) else {}
    if not (user.get("em") or user.get("ph")
            or (user.get("client_ip_address") and user.get("client_user_agent"))):
        reasons.append("user_data needs em, ph, or client_ip_address with client_user_agent "
                       "for Snapchat")
    if source == "website":
        url = data.get("event_source_url")
        if not url:
            reasons.append("website events need event_source_url")
        elif not isinstance(url, str) or not URL.fullmatch(url):
            reasons.append("event_source_url must be an http(s) URL")
    if source == "app":
        app_data = data.get("app_data")
        if not isinstance(app_data, dict) or not app_data.get("extinfo"):
            reasons.append("app events need app_data.extinfo for Snapchat")
    if isinstance(name, str) and snap_event_name(name) == "PURCHASE":
        reasons += check_purchase(data.get("custom_data"))
    return reasons


def expiry(data: dict[str, Any]) -> float:
    """When Snap stops taking this (valid) event: event_time plus 37 days."""
    event_time = data.get("event_time")
    if isinstance(event_time, bool) or not isinstance(event_time, int | float):
        return 0.0
    return float(event_time) + MAX_AGE_DAYS * 86400


def snap_event(data: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """One element of Snap's `data` array from the stored event and its context."""
    event: dict[str, Any] = {
        "event_name": snap_event_name(str(data.get("event_name", ""))),
        "event_time": int(data.get("event_time") or 0),
        "action_source": ACTION_SOURCES.get(str(data.get("action_source")), "OFFLINE"),
    }
    for key in ("event_id", "event_source_url"):
        if data.get(key):
            event[key] = str(data[key])
    event["user_data"] = _user_data(data.get("user_data"), context)
    custom = _custom_data(data.get("custom_data"))
    if custom:
        event["custom_data"] = custom
    app_data = data.get("app_data")
    if event["action_source"] == "MOBILE_APP" and isinstance(app_data, dict):
        event["app_data"] = app_data
    return event


def _user_data(raw: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    user = raw if isinstance(raw, dict) else {}
    out: dict[str, Any] = {}
    for key in HASHED_KEYS:
        value = user.get(key)
        values = value if isinstance(value, list) else [value]
        hashes = [str(v) for v in values if isinstance(v, str) and v]
        if hashes:
            out[key] = hashes
    for key in CLEAR_KEYS:
        if isinstance(user.get(key), str) and user[key]:
            out[key] = user[key]
    click_ids = context.get("click_ids")
    if isinstance(click_ids, dict) and isinstance(click_ids.get("ScCid"), str):
        out["sc_click_id"] = click_ids["ScCid"]
    cookies = context.get("cookies")
    if isinstance(cookies, dict) and isinstance(cookies.get("_scid"), str):
        out["sc_cookie1"] = cookies["_scid"]
    return out


def _custom_data(raw: Any) -> dict[str, Any]:
    custom = raw if isinstance(raw, dict) else {}
    out = {key: value for key, value in custom.items()
           if key in CUSTOM_KEYS and value not in (None, "", [])}
    contents = out.get("contents")
    if isinstance(contents, list):
        out["contents"] = [{key: str(item[key]) for key in CONTENT_KEYS if key in item}
                           for item in contents if isinstance(item, dict)]
    if isinstance(out.get("content_ids"), list):
        out["content_ids"] = [str(item) for item in out["content_ids"]]
    if "brands" in custom and isinstance(custom["brands"], list):
        out["brands"] = ",".join(str(b) for b in custom["brands"])
    return out
