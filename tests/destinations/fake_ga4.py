"""A local stand-in for GA4's Measurement Protocol: `/mp/collect` and the validation server
`/debug/mp/collect`, as Google documents them.

Like GA4 it answers 204 to any request it receives, whatever the events; it records every
request (path, query, headers, JSON body) and checks what a well-formed request has
(measurement_id and api_secret in the query, a JSON body with client_id and at most 25 events,
less than 130 kB). It can be scripted to answer otherwise (5xx, 429, 401/403, 413), and its
validation server answers `validationMessages` as GA4's does: for scripted messages, and for
event names GA4 refuses.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    size: int
    problems: list[str] = field(default_factory=list)  # what a well-formed request lacks

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.body.get("events", []))


class FakeGa4:
    def __init__(self) -> None:
        self.requests: list[Request] = []  # /mp/collect, every one
        self.accepted: list[Request] = []  # /mp/collect answered 2xx
        self.validations: list[Request] = []  # /debug/mp/collect
        self.messages: list[dict[str, str]] = []  # scripted validationMessages
        self.refuse_transaction: str = ""  # answer 413 to requests with this transaction_id
        self._script: deque[tuple[int, dict[str, str]]] = deque()
        self._changed = asyncio.Condition()
        self.url = ""
        self.app = web.Application()
        self.app.router.add_post("/mp/collect", self._collect)
        self.app.router.add_post("/debug/mp/collect", self._debug)

    def script(self, *answers: int | tuple[int, dict[str, str]]) -> None:
        """Answer the next requests with these statuses (and headers), then 204 again."""
        self._script.extend(a if isinstance(a, tuple) else (a, {}) for a in answers)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for request in self.accepted for event in request.events]

    async def wait_for_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.events) >= count), timeout)
        return self.events

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Request]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.requests) >= count), timeout)
        return self.requests

    async def _read(self, request: web.Request) -> Request:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {}
        recorded = Request(request.path, dict(request.query), dict(request.headers),
                           body if isinstance(body, dict) else {}, len(raw))
        problems = recorded.problems
        for key in ("measurement_id", "api_secret"):
            if not request.query.get(key):
                problems.append(f"no {key} in the query")
        if not isinstance(body, dict) or not body.get("client_id"):
            problems.append("no client_id")
        events = recorded.events
        if not events or len(events) > 25:
            problems.append("1 to 25 events")
        if len(raw) >= 130_000:
            problems.append("body of 130 kB or more")
        return recorded

    async def _collect(self, request: web.Request) -> web.Response:
        recorded = await self._read(request)
        status, headers = self._script.popleft() if self._script else (204, {})
        if self.refuse_transaction and any(
                e.get("params", {}).get("transaction_id") == self.refuse_transaction
                for e in recorded.events):
            status = 413
        async with self._changed:
            self.requests.append(recorded)
            if status < 300:
                self.accepted.append(recorded)
            self._changed.notify_all()
        return web.Response(status=status, headers=headers)

    async def _debug(self, request: web.Request) -> web.Response:
        recorded = await self._read(request)
        self.validations.append(recorded)
        messages = list(self.messages)
        for index, event in enumerate(recorded.events):
            name = str(event.get("name", ""))
            if not NAME.fullmatch(name):
                messages.append({
                    "fieldPath": "events",
                    "description": f"Event at index: [{index}] has invalid name [{name}]. "
                                   "Names must start with an alphabetic character.",
                    "validationCode": "NAME_INVALID"})
        return web.json_response({"validationMessages": messages})
