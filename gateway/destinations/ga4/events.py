"""One event in the Conversions API's shape turned into a GA4 Measurement Protocol event, and
GA4's documented limits checked (docs/destinations.md).

GA4 answers 2xx to everything, even to events it then drops or truncates without a word, so
this module refuses what GA4 would lose: `validate_event` (at ingest) and `build_event` (at
send time) apply the same rules, and reasons name fields, never values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ...model import CURRENCY
from ..checks import FUTURE_SKEW_SECONDS

__all__ = ["EVENT_NAMES", "MAX_AGE_SECONDS", "Built", "build_event", "expiry", "ga4_name",
           "validate_event"]

# Meta's standard event names -> GA4's recommended events (or, where GA4 recommends none, the
# snake_case name a GA4 user would pick).
EVENT_NAMES = {
    "PageView": "page_view",
    "ViewContent": "view_item",
    "AddToCart": "add_to_cart",
    "AddToWishlist": "add_to_wishlist",
    "InitiateCheckout": "begin_checkout",
    "AddPaymentInfo": "add_payment_info",
    "Purchase": "purchase",
    "Lead": "generate_lead",
    "CompleteRegistration": "sign_up",
    "Search": "search",
    "Contact": "contact",
    "CustomizeProduct": "customize_product",
    "Donate": "donate",
    "FindLocation": "find_location",
    "Schedule": "schedule",
    "StartTrial": "start_trial",
    "SubmitApplication": "submit_application",
    "Subscribe": "subscribe",
}

# GA4's limits (Measurement Protocol reference, "Limitations"; Event collection limits).
MAX_NAME = 40  # event and parameter names
MAX_PARAMS = 25  # per event
MAX_VALUE = 100  # a parameter's text value (standard properties)
MAX_ITEMS = 200  # per event
LONG_VALUES = {"page_location": 1000, "page_referrer": 420, "page_title": 300}
MAX_AGE_SECONDS = 72 * 3600  # timestamp_micros may backdate an event by 72 hours at most
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
RESERVED_EVENTS = frozenset({
    "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward",
    "adunit_exposure", "app_background", "app_clear_data", "app_exception", "app_install",
    "app_remove", "app_store_refund", "app_store_subscription_cancel",
    "app_store_subscription_convert", "app_store_subscription_renew", "app_update",
    "app_upgrade", "dynamic_link_app_open", "dynamic_link_app_update",
    "dynamic_link_first_open", "error", "firebase_campaign", "firebase_in_app_message_action",
    "firebase_in_app_message_dismiss", "firebase_in_app_message_impression", "first_open",
    "first_visit", "in_app_purchase", "notification_dismiss", "notification_foreground",
    "notification_open", "notification_receive", "os_update", "screen_view", "session_start",
    "session_start_with_rollout", "user_engagement",
})
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
# Parameters the gateway sets itself, and names GA4 keeps for its own use.
OWN_PARAMS = frozenset({"session_id", "engagement_time_msec", "debug_mode", "page_location",
                        "page_referrer", "items", "transaction_id", "search_term", "value",
                        "currency"})
RESERVED_PARAMS = frozenset({"firebase_conversion", "gclid", "session_number"}) | OWN_PARAMS
# custom_data keys turned into something else (items, transaction_id, search_term ...).
CONSUMED = frozenset({"value", "currency", "contents", "content_ids", "order_id",
                      "search_string", "content_name", "content_category"})
_INVALID_RUN = re.compile(r"[^A-Za-z0-9_]+")


def ga4_name(name: str) -> tuple[str, str]:
    """(GA4 event name, "") or ("", why it cannot be one)."""
    mapped = EVENT_NAMES.get(name)
    if mapped is not None:
        return mapped, ""
    # A custom name keeps its case (GA4 names are case-sensitive); what GA4 does not allow
    # (spaces, dashes, dots ...) becomes one underscore.
    cleaned = _INVALID_RUN.sub("_", name.strip()).strip("_")
    if not cleaned or not cleaned[0].isascii() or not cleaned[0].isalpha():
        return "", "event_name must start with a letter (A-Z) for GA4"
    if len(cleaned) > MAX_NAME:
        return "", f"event_name is longer than {MAX_NAME} characters for GA4"
    if cleaned.lower() in RESERVED_EVENTS:
        return "", "event_name is one GA4 reserves for its own events"
    if cleaned.lower().startswith(RESERVED_PREFIXES):
        return "", "event_name starts with a prefix GA4 reserves (firebase_, ga_, google_)"
    return cleaned, ""


class Built:
    """A GA4 event (`event`: name, params, timestamp_micros) and every reason it cannot be
    sent."""

    __slots__ = ("event", "reasons")

    def __init__(self) -> None:
        self.event: dict[str, Any] = {}
        self.reasons: list[str] = []


def build_event(data: Mapping[str, Any], *, session_id: str = "0",
                engagement_time_msec: int = 1, debug_mode: bool = False) -> Built:
    """The GA4 event for one stored event (fields in the Conversions API's shape)."""
    built = Built()
    reasons = built.reasons
    name = _name(data.get("event_name"), reasons)
    custom = data.get("custom_data")
    custom = custom if isinstance(custom, dict) else {}

    params: dict[str, Any] = {}
    for field, param in (("event_source_url", "page_location"), ("referrer_url", "page_referrer")):
        url = data.get(field)
        if isinstance(url, str) and url:
            params[param] = url
    reasons += _money(custom, params, purchase=name == "purchase")
    reasons += _transaction(custom, data.get("event_id"), params, purchase=name == "purchase")
    search = custom.get("search_string")
    if search not in (None, ""):
        params["search_term"] = search if isinstance(search, str) else str(search)
    items, item_reasons = _items(custom)
    reasons += item_reasons
    if items:
        params["items"] = items
    else:
        for key in ("content_name", "content_category"):
            if custom.get(key) not in (None, ""):
                params[key] = custom[key]
    for key, value in custom.items():
        if key in CONSUMED:
            continue
        reasons += _custom_param(key, value, params)

    params["session_id"] = session_id
    params["engagement_time_msec"] = engagement_time_msec
    if debug_mode:
        params["debug_mode"] = 1
    reasons += _check_params(params)

    event: dict[str, Any] = {"name": name, "params": params}
    event_time = data.get("event_time")
    if isinstance(event_time, int | float) and not isinstance(event_time, bool):
        event["timestamp_micros"] = int(event_time * 1_000_000)
    built.event = event
    return built


def _name(raw_name: Any, reasons: list[str]) -> str:
    if not isinstance(raw_name, str) or not raw_name.strip():
        reasons.append("event_name is required")
        return ""
    name, why = ga4_name(raw_name)
    if why:
        reasons.append(why)
    return name


def _transaction(custom: Mapping[str, Any], event_id: Any, params: dict[str, Any], *,
                 purchase: bool) -> list[str]:
    """transaction_id: the order id, else (for a purchase) the event id."""
    order_id = custom.get("order_id")
    if not purchase and order_id in (None, ""):
        return []
    transaction = order_id if order_id not in (None, "") else event_id
    if isinstance(transaction, str | int) and not isinstance(transaction, bool) \
            and str(transaction):
        params["transaction_id"] = str(transaction)
        return []
    return ["purchase needs custom_data.order_id or event_id for GA4's transaction_id"]


def _money(custom: Mapping[str, Any], params: dict[str, Any], *, purchase: bool) -> list[str]:
    reasons = []
    value = custom.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            reasons.append("custom_data.value must be a number for GA4")
        else:
            params["value"] = value
    currency = custom.get("currency")
    if currency not in (None, ""):
        if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
            reasons.append("custom_data.currency must be a 3-letter ISO 4217 code for GA4")
        else:
            params["currency"] = currency.upper()
    elif value is not None or purchase:
        # GA4 records no revenue for a value without its currency.
        reasons.append("custom_data.currency is required by GA4 when there is a value"
                       if value is not None else "purchase needs custom_data.currency for GA4")
    return reasons


def _items(custom: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    contents = custom.get("contents")
    ids = custom.get("content_ids")
    items: list[dict[str, Any]] = []
    reasons: list[str] = []
    if isinstance(contents, list) and contents:
        items = _contents(contents, reasons)
    elif isinstance(ids, list) and ids:
        items = [{"item_id": str(item_id)} for item_id in ids
                 if isinstance(item_id, str | int) and not isinstance(item_id, bool)
                 and str(item_id)]
    if len(items) == 1:
        for key, field in (("content_name", "item_name"), ("content_category", "item_category")):
            value = custom.get(key)
            if isinstance(value, str) and value:
                items[0][field] = value
    if len(items) > MAX_ITEMS:
        reasons.append(f"GA4 takes at most {MAX_ITEMS} items per event (custom_data.contents / "
                       "content_ids)")
    for index, item in enumerate(items):
        for field, value in item.items():
            if isinstance(value, str) and len(value) > MAX_VALUE:
                reasons.append(f"items[{index}].{field} is longer than {MAX_VALUE} characters "
                               "for GA4")
    return items, reasons


def _contents(contents: list[Any], reasons: list[str]) -> list[dict[str, Any]]:
    """Meta's contents [{id, quantity, item_price}] as GA4's items."""
    items = []
    for index, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("id") in (None, ""):
            reasons.append(f"custom_data.contents[{index}] needs an id for GA4's item_id")
            continue
        item: dict[str, Any] = {"item_id": str(content["id"])}
        for source, target in (("quantity", "quantity"), ("item_price", "price")):
            number = content.get(source)
            if isinstance(number, int | float) and not isinstance(number, bool):
                item[target] = number
        items.append(item)
    return items


def _custom_param(key: str, value: Any, params: dict[str, Any]) -> list[str]:
    """Another custom_data key as an event parameter of the same name."""
    if value is None or value == "":
        return []
    where = f"custom_data.{key}"
    if len(key) > MAX_NAME or not NAME.fullmatch(key):
        return [f"{where}: GA4 parameter names are letters, digits and '_' (starting with a "
                f"letter), at most {MAX_NAME} characters"]
    if key in OWN_PARAMS:
        return [f"{where}: the gateway sets GA4's {key} itself; use the Conversions API's "
                "field for it"]
    if key in RESERVED_PARAMS or key.lower().startswith(RESERVED_PREFIXES):
        return [f"{where}: the parameter name is reserved by GA4"]
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, str | int | float):
        return [f"{where}: GA4 parameters must be text or numbers"]
    params[key] = value
    return []


def _check_params(params: Mapping[str, Any]) -> list[str]:
    reasons = []
    if len(params) > MAX_PARAMS:
        reasons.append(f"GA4 takes at most {MAX_PARAMS} parameters per event, this one would "
                       f"have {len(params)} (custom_data has too many keys)")
    for key, value in params.items():
        limit = LONG_VALUES.get(key, MAX_VALUE)
        if isinstance(value, str) and len(value) > limit:
            reasons.append(f"{_source(key)} is longer than {limit} characters for GA4's {key}")
    return reasons


def _source(param: str) -> str:
    return {"page_location": "event_source_url", "page_referrer": "referrer_url",
            "transaction_id": "custom_data.order_id", "search_term": "custom_data.search_string",
            }.get(param, f"custom_data.{param}")


def validate_event(data: Mapping[str, Any], now: float) -> list[str]:
    """Every reason GA4 would drop or cut this event; empty when it is fine."""
    reasons = build_event(data).reasons
    event_time = data.get("event_time")
    if isinstance(event_time, bool) or not isinstance(event_time, int | float):
        reasons.append("event_time must be a Unix timestamp in seconds")
    elif event_time < now - MAX_AGE_SECONDS:
        reasons.append("event_time is more than 72 hours old (GA4's backdating limit)")
    elif event_time > now + FUTURE_SKEW_SECONDS:
        reasons.append("event_time is in the future")
    return reasons


def expiry(data: Mapping[str, Any]) -> float:
    """When GA4 stops accepting the event: event_time plus 72 hours."""
    event_time = data.get("event_time")
    if isinstance(event_time, bool) or not isinstance(event_time, int | float):
        return 0.0
    return float(event_time) + MAX_AGE_SECONDS
