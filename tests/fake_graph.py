"""A local stand-in for Meta's Graph API: records every events request, can be scripted to fail."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Recorded:
    pixel_id: str
    api_version: str
    query: dict[str, str]
    body: dict[str, Any]

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.body["data"])


class FakeGraph:
    """`script(...)` queues responses (status, body); unscripted requests succeed."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []  # every request, answered or failed
        self.accepted: list[Recorded] = []  # requests answered 2xx
        self._script: deque[tuple[int, dict[str, Any]]] = deque()
        self._changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_post("/{version}/{pixel}/events", self._events)

    def script(self, *responses: tuple[int, dict[str, Any]]) -> None:
        self._script.extend(responses)

    def recover(self) -> None:
        """Drop the scripted answers still waiting: every request succeeds from now on."""
        self._script.clear()

    def fail_with(self, status: int, code: int, message: str = "scripted failure",
                  times: int = 1, **extra: Any) -> None:
        error = {"message": message, "type": "OAuthException", "code": code,
                 "fbtrace_id": "AbCdEf", **extra}
        self.script(*[(status, {"error": error})] * times)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for request in self.accepted for event in request.events]

    async def wait_for_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait (bounded) until at least `count` events were accepted."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.events) >= count), timeout
            )
        return self.events

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.requests) >= count), timeout
            )
        return self.requests

    async def _events(self, request: web.Request) -> web.Response:
        recorded = Recorded(
            pixel_id=request.match_info["pixel"],
            api_version=request.match_info["version"],
            query=dict(request.query),
            body=orjson.loads(await request.read()),
        )
        status, body = self._script.popleft() if self._script else (
            200, {"events_received": len(recorded.events), "messages": [],
                  "fbtrace_id": "FakeTrace"}
        )
        async with self._changed:
            self.requests.append(recorded)
            if 200 <= status < 300:
                self.accepted.append(recorded)
            self._changed.notify_all()
        return web.json_response(body, status=status)
