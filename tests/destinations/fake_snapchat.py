"""A local stand-in for Snap's Conversions API v3, built from its documented request and answer
shapes: `POST /v3/{pixel_id}/events?access_token=` (and `/events/validate`), a `data` array of
at most 2,000 events, each with event_name, event_time and action_source; answers Snap's
EventResponse (`status` VALID/INVALID, `reason`, `errors.error_msgs`). Records every request
and can be scripted to fail."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gateway.destinations.snapchat.events import SNAP_EVENTS


@dataclass
class SnapRequest:
    pixel_id: str
    validate: bool
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.body["data"])


class FakeSnap:
    """`script(...)` queues answers (status, body); unscripted requests are checked like Snap
    checks them. `refuse_event_id` makes any request holding that event an INVALID 400."""

    def __init__(self, token: str = "SNAP-TOKEN") -> None:
        self.tokens = {token}
        self.requests: list[SnapRequest] = []
        self.accepted: list[SnapRequest] = []
        self.refuse_event_id = ""
        self._script: deque[tuple[int, dict[str, Any], dict[str, str]]] = deque()
        self.app = web.Application()
        self.app.router.add_post("/v3/{pixel}/events", self._events)
        self.app.router.add_post("/v3/{pixel}/events/validate", self._validate)
        self.url = ""

    def script(self, status: int, body: dict[str, Any], times: int = 1,
               headers: dict[str, str] | None = None) -> None:
        self._script.extend([(status, body, headers or {})] * times)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for request in self.accepted for event in request.events]

    async def _events(self, request: web.Request) -> web.Response:
        return await self._answer(request, validate=False)

    async def _validate(self, request: web.Request) -> web.Response:
        return await self._answer(request, validate=True)

    async def _answer(self, request: web.Request, *, validate: bool) -> web.Response:
        body = orjson.loads(await request.read())
        recorded = SnapRequest(request.match_info["pixel"], validate, dict(request.query),
                               dict(request.headers), body)
        self.requests.append(recorded)
        if self._script:
            status, answer, headers = self._script.popleft()
            return web.json_response(answer, status=status, headers=headers)
        if request.query.get("access_token") not in self.tokens:
            return web.json_response({"status": "INVALID", "reason": "Unauthorized"},
                                     status=401)
        errors = self._check(body)
        if errors:
            return web.json_response({"status": "INVALID", "reason": "Invalid request",
                                      "errors": {"codes": ["INVALID_PARAM"],
                                                 "error_msgs": errors}}, status=400)
        self.accepted.append(recorded)
        if validate:
            return web.json_response({"status": "VALID", "test_event": True, "event_logs": [
                {"event": i, "status": "VALID"} for i in range(len(body["data"]))]})
        return web.json_response({"status": "VALID", "reason": "All events processed"})

    def _check(self, body: Any) -> list[str]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not 1 <= len(data) <= 2000:
            return ["data must hold 1 to 2000 events"]
        errors = []
        for event in data:
            if event.get("event_name") not in SNAP_EVENTS:
                errors.append("event_name is not a Snap event")
            if not isinstance(event.get("event_time"), int):
                errors.append("event_time is required")
            if event.get("action_source") not in ("WEB", "MOBILE_APP", "OFFLINE"):
                errors.append("action_source is invalid")
            if self.refuse_event_id and event.get("event_id") == self.refuse_event_id:
                errors.append("Event has an invalid currency for PURCHASE")
        return errors
