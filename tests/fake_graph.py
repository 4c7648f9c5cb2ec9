"""A local stand-in for Meta's Graph API: records every events request, can be scripted to fail;
answers node reads (`GET /{version}/{pixel-id}?fields=id,name`, `GET /{version}/me`) as the
console's token check makes them; with `valid_tokens` set it refuses any other token with
Meta's code 190, on reads and events alike."""

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
        self.reads: list[tuple[str, dict[str, str]]] = []  # node reads: (node, query)
        self.valid_tokens: set[str] | None = None  # None: every token is good
        # A node read with one of these tokens waits until its event is set (a slow check).
        self.read_gates: dict[str, asyncio.Event] = {}
        self._script: deque[tuple[int, dict[str, Any]]] = deque()
        self._changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_post("/{version}/{pixel}/events", self._events)
        self.app.router.add_get("/{version}/{node}", self._read)

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
        if not self._token_good(recorded.query):
            status, body = self._invalid_token()
        async with self._changed:
            self.requests.append(recorded)
            if 200 <= status < 300:
                self.accepted.append(recorded)
            self._changed.notify_all()
        return web.json_response(body, status=status)

    def _token_good(self, query: dict[str, str]) -> bool:
        return self.valid_tokens is None or query.get("access_token") in self.valid_tokens

    @staticmethod
    def _invalid_token() -> tuple[int, dict[str, Any]]:
        """Meta's answer to an unusable token (OAuthException, code 190)."""
        return 400, {"error": {"message": "Invalid OAuth access token - Cannot parse access "
                               "token", "type": "OAuthException", "code": 190,
                               "fbtrace_id": "AbCdEf"}}

    async def _read(self, request: web.Request) -> web.Response:
        """A node read: only the `fields` asked for (id, name), as the Graph API answers."""
        node, query = request.match_info["node"], dict(request.query)
        self.reads.append((node, query))
        gate = self.read_gates.get(query.get("access_token", ""))
        if gate is not None:
            await gate.wait()
        if not self._token_good(query):
            status, body = self._invalid_token()
            return web.json_response(body, status=status)
        known = {"id": "100000000000001" if node == "me" else node,
                 "name": "Fake user" if node == "me" else "Fake pixel"}
        fields = query.get("fields", "id").split(",")
        return web.json_response({k: v for k, v in known.items() if k in fields})
