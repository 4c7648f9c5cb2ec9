"""Turn a browser hit's parameters (docs/snippet.md) into an event in the Conversions API's shape.

Only the server's facts are trusted for `event_time` (receive time), the client's IP and its
user agent; the client's own `ts` is kept in the context for reference.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..errors import HitError
from ..identity.clickids import click_ids
from ..identity.consent import read_consent
from ..model import MAX_EVENT_NAME, PIXEL_ID, Context, Event

__all__ = ["USER_DATA_KEYS", "build_hit_event"]

CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # no store or platform takes these in names and ids
MAX_EVENT_ID = 256
# `a`: the integration that tagged the page (fbq('set', 'agent', ...)), Meta's partner_agent.
MAX_AGENT = 128
MAX_SAFE_INTEGER = 2**53  # JSON consumers (and orjson) cannot carry larger integers exactly
# Advanced-matching keys a pixel hit may carry in ud[...] (Meta's user_data names).
USER_DATA_KEYS = frozenset(
    {"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"}
)
_FLOAT_KEYS = frozenset({"value", "predicted_ltv", "net_revenue"})
_INT_KEYS = frozenset({"num_items"})
_LIST_KEYS = frozenset({"content_ids", "contents"})


def new_event_id() -> str:
    return secrets.token_hex(16)


def build_hit_event(
    params: Mapping[str, str],
    *,
    ip: str | None,
    user_agent: str | None,
    fbp: str | None,
    fbc: str | None,
    now: float,
    page_url: str | None = None,
    make_event_id: Callable[[], str] = new_event_id,
) -> Event:
    """The CAPI event for one hit, or HitError naming the parameter that is wrong."""
    pixel_id = _required(params, "id", "the pixel id")
    if not PIXEL_ID.fullmatch(pixel_id):
        raise HitError("parameter 'id' must be a numeric pixel id")
    event_name = _required(params, "ev", "the event name")
    if len(event_name) > MAX_EVENT_NAME or CONTROL.search(event_name):
        raise HitError(
            f"parameter 'ev' must be at most {MAX_EVENT_NAME} printable characters"
        )
    event_id = params.get("eid", "").strip()
    if len(event_id) > MAX_EVENT_ID or CONTROL.search(event_id):
        raise HitError(f"parameter 'eid' must be at most {MAX_EVENT_ID} printable characters")

    custom_data, user_data = _split_data(params)
    if ip:
        user_data["client_ip_address"] = ip
    if user_agent:
        user_data["client_user_agent"] = user_agent
    if fbp:
        user_data["fbp"] = fbp
    if fbc:
        user_data["fbc"] = fbc

    data: dict[str, Any] = {
        "event_name": event_name,
        "event_time": int(now),
        "event_id": event_id or make_event_id(),
        "action_source": "website",
    }
    # A <noscript> image hit carries no dl; the browser's Referer is the page it sits on.
    source_url = params.get("dl") or page_url
    if source_url:
        data["event_source_url"] = source_url
    if params.get("rl"):
        data["referrer_url"] = params["rl"]
    data["user_data"] = user_data
    if custom_data:
        data["custom_data"] = custom_data
    data.update(_data_processing_options(params))

    context = Context(
        source="browser", pixel_id=pixel_id, ip=ip, user_agent=user_agent,
        request_fields=_agent_fields(params),
        click_ids=click_ids(source_url, params.get("rl")) or None,
        consent=read_consent(params),
    )
    return Event(data=data, context=context)


def _split_data(params: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """cd[...] -> custom_data, ud[...] -> user_data (known keys only; others are left out)."""
    custom_data: dict[str, Any] = {}
    user_data: dict[str, Any] = {}
    for name, value in params.items():
        if name[-1:] != "]":  # most parameters (id, ev, dl, ...): skip cheaply
            continue
        prefix, key = name[:3], name[3:-1]
        if prefix == "cd[" and key:
            custom_data[key] = _custom_value(key, value)
        elif prefix == "ud[":
            if key in USER_DATA_KEYS and value.strip():
                user_data[key] = value
    return custom_data, user_data


def _agent_fields(params: Mapping[str, str]) -> str:
    """The hit's `a` as the request fields a server event would carry it in (partner_agent)."""
    agent = params.get("a", "").strip()
    if not agent:
        return ""
    if len(agent) > MAX_AGENT or CONTROL.search(agent):
        raise HitError(f"parameter 'a' (agent) must be at most {MAX_AGENT} printable characters")
    return orjson.dumps({"partner_agent": agent}).decode()


def _required(params: Mapping[str, str], name: str, meaning: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise HitError(f"missing parameter '{name}' ({meaning})")
    return value


def _custom_value(key: str, raw: str) -> Any:
    """cd[...] values: numbers for Meta's numeric keys, JSON for arrays/objects, else text."""
    text = raw.strip()
    if key in _FLOAT_KEYS or key in _INT_KEYS:
        try:
            number = float(text)
        except ValueError:
            raise HitError(f"parameter 'cd[{key}]' must be a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise HitError(f"parameter 'cd[{key}]' must be a finite number")
        if key in _INT_KEYS:
            if not number.is_integer() or abs(number) > MAX_SAFE_INTEGER:
                raise HitError(f"parameter 'cd[{key}]' must be a whole number")
            return int(number)
        return number
    if text[:1] in ("[", "{"):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise HitError(f"parameter 'cd[{key}]' looks like JSON but does not parse") from None
    if key in _LIST_KEYS:
        if key == "contents":
            raise HitError("parameter 'cd[contents]' must be a JSON array of objects")
        return [text] if text else []
    return raw


def _data_processing_options(params: Mapping[str, str]) -> dict[str, Any]:
    if "dpo" not in params:
        return {}
    options = [item.strip() for item in params["dpo"].split(",") if item.strip()]
    if any(option != "LDU" for option in options):
        raise HitError("parameter 'dpo' may only be empty or LDU")
    result: dict[str, Any] = {"data_processing_options": options}
    for param, field in (("dpoco", "data_processing_options_country"),
                         ("dpost", "data_processing_options_state")):
        if params.get(param, "").strip():
            try:
                number = int(params[param])
            except ValueError:
                number = MAX_SAFE_INTEGER + 1
            if abs(number) > MAX_SAFE_INTEGER:
                raise HitError(f"parameter '{param}' must be a whole number")
            result[field] = number
    return result
