"""The JSON type of every documented Conversions API field of a server event, checked at ingest
(the table, with its reasons, is in docs/server-events.md).

Meta refuses a whole batch for one wrongly typed field, and the relay then pays for finding it
by bisection; so a wrongly typed field makes its event refused here, by name. A few forms
that backends commonly send and Meta takes are tolerated and rewritten to the documented type,
so every destination sees one shape: numbers and whole numbers as numeric text (PHP reads them
from the database as strings), a whole number written as `12.0`, fractional event times (cut
to the second, as `Date.now() / 1000` gives them), `1`/`0` and `"true"`/`"false"` for flags.

`null` counts as absent everywhere (the Node SDK sends it for every unset field). Keys the
table does not name pass through untouched: custom_data takes custom properties of any shape,
and unknown user_data keys are left to hashing (which drops them with a warning). Reasons name
the field's path, never its value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..hashing import HASHED_KEYS
from .hitevent import MAX_SAFE_INTEGER

__all__ = ["CLEAR_TYPES", "EVENT", "MAX_REASONS", "USER_DATA", "Fields", "ListOf", "Scalar",
           "check_fields"]

MAX_REASONS = 10  # per event: a thousand bad `contents` items need not be listed one by one

_WRONG = object()  # what a conversion returns for a value of the wrong type
_WHOLE_TEXT = re.compile(r"-?[0-9]{1,15}")  # exact in a double, like every JSON number
_DECIMAL_TEXT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")
_MAX_DECIMAL_TEXT = 40
_FLAGS = {"true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True)
class Scalar:
    """A value of one JSON type; `convert` gives the value to keep, or _WRONG."""

    what: str  # for the reason: "<path> must be <what>"
    convert: Callable[[Any], Any]


@dataclass(frozen=True)
class ListOf:
    """A JSON array whose every item is of one kind."""

    item: Kind
    what: str


@dataclass(frozen=True)
class Fields:
    """A JSON object; the named keys have a kind, any other key passes through."""

    fields: Mapping[str, Kind]


Kind = Scalar | ListOf | Fields


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> Any:
    return value if isinstance(value, str) else _WRONG


def _identifier(value: Any) -> Any:
    # Ids Meta documents as numbers (lead_id, page_id) arrive as text from the SDKs, and
    # content or order ids straight from a database as numbers: both pass as sent.
    return value if isinstance(value, str) or _is_whole(value) else _WRONG


def _whole(value: Any) -> Any:
    if _is_whole(value):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _WHOLE_TEXT.fullmatch(value):
        return int(value)
    return _WRONG


def _seconds(value: Any) -> Any:
    """Unix seconds: a whole number, or a fractional one cut to the second."""
    if isinstance(value, float) and math.isfinite(value):
        value = math.floor(value)
    whole = _whole(value)
    return whole if whole is _WRONG or abs(whole) <= MAX_SAFE_INTEGER else _WRONG


def _number(value: Any) -> Any:
    if _is_whole(value) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if not isinstance(value, str) or len(value) > _MAX_DECIMAL_TEXT:
        return _WRONG
    if _WHOLE_TEXT.fullmatch(value):
        return int(value)
    if _DECIMAL_TEXT.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else _WRONG  # "1e999"
    return _WRONG


def _flag(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if _is_whole(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _FLAGS.get(value.lower(), _WRONG)
    return _WRONG


def _hashable(value: Any) -> Any:
    """What hashing takes for one key: text (raw or hashed), a number (a zip code), or a list."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            return _WRONG
    return value


def _text_or_flag(value: Any) -> Any:
    return value if isinstance(value, str | bool) else _WRONG


def _array(value: Any) -> Any:
    return value if isinstance(value, list) else _WRONG


TEXT = Scalar("text", _text)
IDENTIFIER = Scalar("text or a whole number", _identifier)
WHOLE = Scalar("a whole number", _whole)
SECONDS = Scalar("a Unix timestamp in seconds", _seconds)
NUMBER = Scalar("a number", _number)
FLAG = Scalar("true or false", _flag)
TEXTS = ListOf(TEXT, "a list of text")
IDENTIFIERS = ListOf(IDENTIFIER, "a list of text or whole numbers")

CLEAR_TYPES: dict[str, Kind] = {  # every key of hashing.CLEAR_KEYS (a test checks)
    "client_ip_address": TEXT, "client_user_agent": TEXT, "fbc": TEXT, "fbp": TEXT,
    "subscription_id": IDENTIFIER, "fb_login_id": IDENTIFIER, "lead_id": IDENTIFIER,
    "ctwa_clid": TEXT, "page_id": IDENTIFIER, "page_scoped_user_id": IDENTIFIER,
    "ig_account_id": IDENTIFIER, "ig_sid": IDENTIFIER, "anon_id": TEXT, "madid": TEXT,
}
USER_DATA = Fields({
    **{key: Scalar("text or a list of text", _hashable) for key in sorted(HASHED_KEYS)},
    **CLEAR_TYPES,
})
CONTENT = Fields({
    "id": IDENTIFIER, "quantity": WHOLE, "item_price": NUMBER, "title": TEXT,
    "description": TEXT, "brand": TEXT, "category": TEXT, "delivery_category": TEXT,
})
CUSTOM_DATA = Fields({
    "value": NUMBER, "net_revenue": NUMBER, "currency": TEXT, "content_name": TEXT,
    "content_category": TEXT, "content_ids": IDENTIFIERS,
    "contents": ListOf(CONTENT, "a list of objects"), "content_type": TEXT,
    "order_id": IDENTIFIER, "predicted_ltv": NUMBER, "num_items": WHOLE,
    # Text in the Conversions API's table; the pixel's own examples send a boolean.
    "status": Scalar("text or true/false", _text_or_flag),
    "search_string": TEXT, "delivery_category": TEXT, "item_number": IDENTIFIER,
})
APP_DATA = Fields({
    "advertiser_tracking_enabled": FLAG, "application_tracking_enabled": FLAG,
    "consider_views": FLAG, "include_dwell_data": FLAG, "include_video_data": FLAG,
    "extinfo": Scalar("a list", _array), "campaign_ids": TEXT, "install_referrer": TEXT,
    "installer_package": TEXT, "receipt_data": TEXT, "windows_attribution_id": TEXT,
    "anon_id": TEXT, "app_user_id": TEXT,
})
ORIGINAL_EVENT_DATA = Fields({
    "event_name": TEXT, "event_time": SECONDS, "order_id": IDENTIFIER, "event_id": IDENTIFIER,
})
ATTRIBUTION_DATA = Fields({
    "scope": TEXT, "visit_time": SECONDS, "ad_id": IDENTIFIER, "adset_id": IDENTIFIER,
    "campaign_id": IDENTIFIER, "attribution_share": NUMBER, "attribution_model": TEXT,
    "attr_window": WHOLE, "attribution_value": NUMBER, "attribution_source": TEXT,
    "touchpoint_type": TEXT, "touchpoint_ts": SECONDS, "attribution_method": TEXT,
    "decline_reason": TEXT, "auditing_token": TEXT, "linkage_key": TEXT,
    "touchpoint_id": TEXT, "total_credit": NUMBER, "partner_client_id": TEXT,
    "attribution_setting": Fields({"inactivity_window_hours": WHOLE,
                                   "reattribution_window_hours": WHOLE}),
})
EVENT = Fields({
    "event_name": TEXT, "event_time": SECONDS, "event_id": IDENTIFIER,
    "event_source_url": TEXT, "referrer_url": TEXT, "action_source": TEXT,
    "messaging_channel": TEXT, "opt_out": FLAG, "data_processing_options": TEXTS,
    "data_processing_options_country": WHOLE, "data_processing_options_state": WHOLE,
    "advanced_measurement_table": TEXT,
    "user_data": USER_DATA, "custom_data": CUSTOM_DATA, "app_data": APP_DATA,
    "original_event_data": ORIGINAL_EVENT_DATA, "attribution_data": ATTRIBUTION_DATA,
})


def check_fields(data: dict[str, Any]) -> list[str]:
    """Why documented fields of this event have the wrong type (empty: all fit); tolerated
    forms are rewritten in place to the documented type."""
    problems: list[str] = []
    _check_object(data, EVENT, "", problems)
    if len(problems) > MAX_REASONS:
        more = len(problems) - MAX_REASONS + 1
        problems[MAX_REASONS - 1:] = [f"and {more} more fields of the wrong type"]
    return problems


def _check(value: Any, kind: Kind, path: str, problems: list[str]) -> Any:
    """The value to keep (converted, or as received when it is wrong)."""
    if isinstance(kind, Scalar):
        converted = kind.convert(value)
        if converted is _WRONG:
            problems.append(f"{path} must be {kind.what}")
            return value
        return converted
    if isinstance(kind, Fields):
        if not isinstance(value, dict):
            problems.append(f"{path} must be an object")
        else:
            _check_object(value, kind, path + ".", problems)
        return value
    if not isinstance(value, list):
        problems.append(f"{path} must be {kind.what}")
        return value
    for index, item in enumerate(value):
        value[index] = _check(item, kind.item, f"{path}[{index}]", problems)
    return value


def _check_object(value: dict[str, Any], kind: Fields, prefix: str,
                  problems: list[str]) -> None:
    for key, field_kind in kind.fields.items():
        item = value.get(key)
        if item is not None:
            value[key] = _check(item, field_kind, prefix + key, problems)
