"""The Events API 2.0 body, built from the stored event (Meta's shape) and its context.

`{"event_source": "web", "event_source_id": <pixel code>, "data": [...], "test_event_code"?}`;
each event: `event` (Meta's standard names mapped to TikTok's), `event_time`, `event_id`,
`user` (hashes from the type's identities, else Meta's where the normalization is the same;
ttclid, ttp, ip, user_agent in the clear), `page` (url, referrer) and `properties` (value,
currency, contents, content_type, query, order_id). docs/destinations.md has the tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ...storage import ClaimedRow

__all__ = ["EVENT_NAMES", "batch_body", "request_body", "tiktok_event", "tiktok_name"]

# Meta's standard event name -> TikTok's. TikTok's standard events carry the same names as
# Meta's (Purchase, AddToCart, Lead, ...), except the page view, which the TikTok pixel and
# Events API call `Pageview`. Any other name (custom events) passes through unchanged.
EVENT_NAMES: Mapping[str, str] = {
    "PageView": "Pageview",
    "ViewContent": "ViewContent",
    "AddToCart": "AddToCart",
    "AddToWishlist": "AddToWishlist",
    "InitiateCheckout": "InitiateCheckout",
    "AddPaymentInfo": "AddPaymentInfo",
    "Purchase": "Purchase",
    "Lead": "Lead",
    "CompleteRegistration": "CompleteRegistration",
    "Search": "Search",
    "Contact": "Contact",
    "Subscribe": "Subscribe",
    "StartTrial": "StartTrial",
    "Schedule": "Schedule",
    "FindLocation": "FindLocation",
    "CustomizeProduct": "CustomizeProduct",
    "SubmitApplication": "SubmitApplication",
}
# Meta's `contents` item keys -> TikTok's.
_CONTENT_KEYS = (("id", "content_id"), ("quantity", "quantity"), ("item_price", "price"),
                 ("title", "content_name"), ("category", "content_category"),
                 ("brand", "brand"))
_CONTENT_TYPES = frozenset({"product", "product_group"})
# Meta's user_data hashes TikTok can take as they are (the same normalization and hash).
_SAME_HASH = (("em", "email"), ("external_id", "external_id"))
_SHA256 = re.compile(r"[0-9a-f]{64}")


def tiktok_name(meta_name: str) -> str:
    return EVENT_NAMES.get(meta_name, meta_name)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _user(data: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    user_data = data.get("user_data")
    meta: Mapping[str, Any] = user_data if isinstance(user_data, dict) else {}
    identities = context.get("identities")
    own = identities.get("tiktok") if isinstance(identities, dict) else None
    user: dict[str, Any] = dict(own) if isinstance(own, dict) else {}
    for meta_key, field in _SAME_HASH:
        if field not in user:
            value = _plain_hashes(meta.get(meta_key))
            if value:
                user[field] = value
    click_ids = context.get("click_ids")
    if isinstance(click_ids, dict) and click_ids.get("ttclid"):
        user["ttclid"] = click_ids["ttclid"]
    cookies = context.get("cookies")
    if isinstance(cookies, dict) and cookies.get("_ttp"):
        user["ttp"] = cookies["_ttp"]
    if meta.get("client_ip_address"):
        user["ip"] = meta["client_ip_address"]
    if meta.get("client_user_agent"):
        user["user_agent"] = meta["client_user_agent"]
    return user


def _plain_hashes(value: Any) -> str | list[str] | None:
    """Meta's hash(es) without the `.appendix` newer SDKs add (TikTok takes bare SHA-256)."""
    values = value if isinstance(value, list) else [value]
    hashes = [head for item in values if isinstance(item, str)
              and _SHA256.fullmatch(head := item.partition(".")[0])]
    if not hashes:
        return None
    return hashes if isinstance(value, list) else hashes[0]


def _contents(custom: Mapping[str, Any]) -> list[dict[str, Any]]:
    contents: list[dict[str, Any]] = []
    given = custom.get("contents")
    if isinstance(given, list):
        for item in given:
            if not isinstance(item, dict):
                continue
            mapped = {theirs: item[ours] for ours, theirs in _CONTENT_KEYS
                      if item.get(ours) is not None}
            if "content_id" in mapped:
                mapped["content_id"] = str(mapped["content_id"])
            if mapped:
                contents.append(mapped)
    elif isinstance(custom.get("content_ids"), list):
        contents = [{"content_id": str(item)} for item in custom["content_ids"]
                    if isinstance(item, str | int) and not isinstance(item, bool)]
    if len(contents) == 1:  # the event's content name and category describe its one item
        for ours, theirs in (("content_name", "content_name"),
                             ("content_category", "content_category")):
            if isinstance(custom.get(ours), str) and theirs not in contents[0]:
                contents[0][theirs] = custom[ours]
    return contents


def _properties(data: Mapping[str, Any]) -> dict[str, Any]:
    custom_data = data.get("custom_data")
    custom: Mapping[str, Any] = custom_data if isinstance(custom_data, dict) else {}
    properties: dict[str, Any] = {}
    if _number(custom.get("value")):
        properties["value"] = custom["value"]
    if isinstance(custom.get("currency"), str):
        properties["currency"] = custom["currency"].upper()
    contents = _contents(custom)
    if contents:
        properties["contents"] = contents
    if custom.get("content_type") in _CONTENT_TYPES:
        properties["content_type"] = custom["content_type"]
    elif contents:
        properties["content_type"] = "product"
    if isinstance(custom.get("search_string"), str):
        properties["query"] = custom["search_string"]
    if isinstance(custom.get("order_id"), str | int) and not isinstance(custom["order_id"], bool):
        properties["order_id"] = str(custom["order_id"])
    return properties


def tiktok_event(data: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """One event of `data`, TikTok's way."""
    event: dict[str, Any] = {"event": tiktok_name(str(data.get("event_name", ""))),
                             "event_time": int(data.get("event_time") or 0)}
    if data.get("event_id"):
        event["event_id"] = str(data["event_id"])
    user = _user(data, context)
    if user:
        event["user"] = user
    page = {theirs: data[ours] for ours, theirs in (("event_source_url", "url"),
                                                   ("referrer_url", "referrer"))
            if isinstance(data.get(ours), str) and data[ours]}
    if page:
        event["page"] = page
    properties = _properties(data)
    if properties:
        event["properties"] = properties
    return event


def batch_body(rows: Sequence[ClaimedRow], pixel_code: str, test_event_code: str) -> bytes:
    """The request body for rows that share a batch key."""
    events = []
    for row in rows:
        data = orjson.loads(row.payload)
        context = orjson.loads(row.context) if row.context else {}
        events.append(tiktok_event(data if isinstance(data, dict) else {},
                                   context if isinstance(context, dict) else {}))
    return request_body(events, pixel_code, test_event_code)


def request_body(events: list[dict[str, Any]], pixel_code: str, test_event_code: str) -> bytes:
    """The request body for TikTok's events (each from tiktok_event)."""
    body: dict[str, Any] = {"event_source": "web", "event_source_id": pixel_code,
                            "data": events}
    if test_event_code:
        body["test_event_code"] = test_event_code
    return orjson.dumps(body)
