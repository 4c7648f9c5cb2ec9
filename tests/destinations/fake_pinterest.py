"""A local Pinterest Conversions API (v5 Send conversions), built from its documented request
and answer shapes: `POST /v5/ad_accounts/{ad_account_id}/events` with
`Authorization: Bearer <token>`, `?test=true`, a body `{"data": [...]}` of 1 to 1,000 events
whose schema refuses unknown properties; answers 200 with per-event results, 400
{code 4196}, 401 {code 2}, 403 {code 29}, 422 (not all processed), 429 {code 8}, 503.

It records every request, checks what Pinterest checks, and can be scripted: `answers` (status,
body) are given first, in order; `failing` event ids are reported `failed` (in a 422, or in a
200 when `partial_in_200`)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

EVENT_NAMES = {"add_payment_info", "add_to_cart", "add_to_wishlist", "app_install", "checkout",
               "custom", "initiate_checkout", "lead", "page_visit", "search", "signup",
               "subscribe", "view_category", "view_content", "watch_video"}
ACTION_SOURCES = {"app_android", "app_ios", "web", "offline"}
EVENT_KEYS = {"action_source", "app_id", "app_info", "app_name", "app_version", "custom_data",
              "device_brand", "device_carrier", "device_info", "device_model", "device_type",
              "event_id", "event_name", "event_source_url", "event_time", "language",
              "opt_out", "os_version", "partner_name", "user_data", "wifi"}
HASHED_KEYS = {"country", "ct", "db", "em", "external_id", "fn", "ge", "hashed_maids", "ln",
               "ph", "st", "zp"}
USER_KEYS = HASHED_KEYS | {"click_id", "client_ip_address", "client_user_agent", "partner_id"}
CUSTOM_KEYS = {"content_brand", "content_category", "content_ids", "content_name", "contents",
               "currency", "external_measurement_id", "external_measurement_vendor_id", "np",
               "num_items", "opt_out_type", "order_id", "predicted_ltv", "search_string",
               "value"}
CONTENT_KEYS = {"id", "item_brand", "item_category", "item_name", "item_price", "quantity"}
SHA256 = re.compile(r"[a-f0-9]{64}")


class FakePinterest:
    def __init__(self, token: str = "pina_TEST-TOKEN") -> None:
        self.tokens = {token}
        self.requests: list[dict[str, Any]] = []  # path, account, query, authorization, body
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.failing: set[str] = set()
        self.partial_in_200 = False
        self.url = ""
        self.app = web.Application()
        self.app.router.add_post("/v5/ad_accounts/{ad_account_id}/events", self.handle)

    def received(self) -> list[dict[str, Any]]:
        """Every event of every request that was answered 200, in order."""
        return [e for r in self.requests if r["status"] == 200 for e in r["body"]["data"]]

    async def handle(self, request: web.Request) -> web.Response:
        body: Any = None
        try:
            body = await request.json()
        except ValueError:
            pass
        record = {"path": request.path, "account": request.match_info["ad_account_id"],
                  "query": dict(request.query), "authorization":
                  request.headers.get("Authorization", ""), "body": body, "status": 0}
        self.requests.append(record)
        status, answer = self._answer(request, body)
        record["status"] = status
        return web.json_response(answer, status=status)

    def _answer(self, request: web.Request, body: Any) -> tuple[int, dict[str, Any]]:
        if self.answers:
            return self.answers.pop(0)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in self.tokens:
            return 401, {"code": 2, "message": "Authentication failed."}
        problem = _invalid(body)
        if problem:
            return 400, {"code": 4196, "message": f"Invalid request: {problem}"}
        data = body["data"]
        results = [{"status": "failed", "error_message": "event_time is too old",
                    "warning_message": None} if e["event_id"] in self.failing else
                   {"status": "processed", "error_message": None, "warning_message": None}
                   for e in data]
        summary = {"num_events_received": len(data),
                   "num_events_processed": sum(r["status"] == "processed" for r in results),
                   "events": results}
        if summary["num_events_processed"] < len(data) and not self.partial_in_200:
            return 422, {"code": 4200, "message": "Not all events were successfully processed.",
                         "details": summary}
        return 200, summary


def _invalid(body: Any) -> str:
    """What Pinterest's schema would refuse, or ""."""
    if not isinstance(body, dict) or set(body) != {"data"} or not isinstance(body["data"], list):
        return "body must be {data: [...]}"
    if not 1 <= len(body["data"]) <= 1000:
        return "data must hold 1 to 1000 events"
    for i, event in enumerate(body["data"]):
        problem = _invalid_event(event)
        if problem:
            return f"data[{i}]: {problem}"
    return ""


def _invalid_event(event: Any) -> str:
    if not isinstance(event, dict):
        return "not an object"
    extra = set(event) - EVENT_KEYS
    if extra:
        return f"Additional properties are not allowed ({sorted(extra)} unexpected)"
    for key in ("event_name", "action_source", "event_time", "event_id", "user_data"):
        if key not in event:
            return f"'{key}' is a required property"
    if event["event_name"] not in EVENT_NAMES:
        return "event_name is not one of the enum"
    if event["action_source"] not in ACTION_SOURCES:
        return "action_source is not one of the enum"
    if not isinstance(event["event_time"], int) or not isinstance(event["event_id"], str):
        return "event_time must be an integer and event_id a string"
    return _invalid_user(event["user_data"]) or _invalid_custom(event.get("custom_data", {}))


def _invalid_user(user: Any) -> str:
    if not isinstance(user, dict) or set(user) - USER_KEYS:
        return "user_data has unknown properties"
    for key in HASHED_KEYS & set(user):
        if not isinstance(user[key], list) or not all(
                isinstance(v, str) and SHA256.fullmatch(v) for v in user[key]):
            return f"user_data.{key} must be a list of SHA-256 hashes"
    if not (user.get("em") or user.get("hashed_maids")
            or (user.get("client_ip_address") and user.get("client_user_agent"))):
        return "user_data needs em, hashed_maids or client_ip_address + client_user_agent"
    return ""


def _invalid_custom(custom: Any) -> str:
    if not isinstance(custom, dict) or set(custom) - CUSTOM_KEYS:
        return "custom_data: Additional properties are not allowed"
    for key in ("value", "currency", "order_id", "search_string"):
        if key in custom and not isinstance(custom[key], str):
            return f"custom_data.{key} must be a string"
    if "num_items" in custom and not isinstance(custom["num_items"], int):
        return "custom_data.num_items must be an integer"
    for item in custom.get("contents", []):
        if set(item) - CONTENT_KEYS or not isinstance(item.get("item_price", ""), str) \
                or not isinstance(item.get("quantity", 0), int):
            return "custom_data.contents: invalid item"
    return ""
