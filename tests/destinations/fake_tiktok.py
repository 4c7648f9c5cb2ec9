"""A local stand-in for TikTok's Events API 2.0 (`POST /open_api/v1.3/event/track/`), built from
TikTok's documented request and answer shapes: it records every request, checks what TikTok
checks (the Access-Token header, event_source, event_source_id, data with 1-1000 events each
with `event` and `event_time`) and answers HTTP 200 with `{"code", "message", "request_id",
"data"}`, code 0 meaning success. It can be scripted to answer other codes or statuses, and to
refuse (code 40002) any batch holding an event whose event_id is in `refuse`."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

TRACK_PATH = "/open_api/v1.3/event/track/"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.body.get("data", []))


class FakeTikTok:
    def __init__(self, token: str = "TT-TOKEN-tiktok") -> None:
        self.tokens = {token}  # the tokens TikTok accepts
        self.requests: list[Recorded] = []
        self.accepted: list[Recorded] = []
        self.refuse: set[str] = set()  # event ids TikTok refuses (their batch is refused)
        self._script: deque[tuple[int, dict[str, Any] | bytes]] = deque()
        self._changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_post(TRACK_PATH, self._track)
        self.url = ""

    def answer(self, code: int, message: str = "scripted", *, status: int = 200,
               times: int = 1) -> None:
        """Queue TikTok's envelope with `code` for the next requests."""
        self.script(*[(status, {"code": code, "message": message,
                                "request_id": "2026120701TEST", "data": {}})] * times)

    def script(self, *answers: tuple[int, dict[str, Any] | bytes]) -> None:
        self._script.extend(answers)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for request in self.accepted for event in request.events]

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.requests) >= count), timeout)
        return self.requests

    async def wait_for_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.events) >= count), timeout)
        return self.events

    def _check(self, recorded: Recorded) -> tuple[int, str] | None:
        token = recorded.headers.get("Access-Token", "")
        if not token:
            return 40104, "The access token is empty."
        if token not in self.tokens:
            return 40105, "Access token is incorrect or has been revoked."
        body = recorded.body
        if body.get("event_source") != "web":
            return 40002, "event_source: invalid value"
        if not body.get("event_source_id"):
            return 40002, "event_source_id: field is required"
        data = body.get("data")
        if not isinstance(data, list) or not 1 <= len(data) <= 1000:
            return 40002, "data: must hold between 1 and 1000 events"
        for index, event in enumerate(data):
            if not isinstance(event.get("event"), str) or not event["event"]:
                return 40002, f"data[{index}].event: field is required"
            if not isinstance(event.get("event_time"), int):
                return 40002, f"data[{index}].event_time: must be an integer"
            if event.get("event_id") in self.refuse:
                return 40002, f"data[{index}].properties.currency: invalid value (sent by " \
                              "joe@example.com)"
        return None

    async def _track(self, request: web.Request) -> web.Response:
        recorded = Recorded(path=request.path, headers=dict(request.headers),
                            query=dict(request.query), body=orjson.loads(await request.read()))
        status: int
        answer: dict[str, Any] | bytes
        if self._script:
            status, answer = self._script.popleft()
        else:
            problem = self._check(recorded)
            code, message = problem if problem else (0, "OK")
            status, answer = 200, {"code": code, "message": message,
                                   "request_id": "2026120701FAKE", "data": {}}
        async with self._changed:
            self.requests.append(recorded)
            if status == 200 and isinstance(answer, dict) and answer.get("code") == 0:
                self.accepted.append(recorded)
            self._changed.notify_all()
        if isinstance(answer, bytes):
            return web.Response(body=answer, status=status, content_type="text/html")
        return web.json_response(answer, status=status)
