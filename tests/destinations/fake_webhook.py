"""A local webhook receiver: it checks each request's signature with the verification snippet
published in docs/destinations.md (read from that page, so the docs and the tests
cannot drift apart), records bodies and headers, and can be scripted to fail."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

DOCS = Path(__file__).resolve().parents[2] / "docs" / "destinations.md"


def published_verify() -> Callable[[str, bytes, str, str], bool]:
    """`verify(secret, body, signature, timestamp)` as the docs give it to receivers."""
    [snippet] = [block for block in re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
                 if "def verify(" in block]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOCS), "exec"), namespace)
    return namespace["verify"]  # type: ignore[no-any-return]


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    verified: bool

    @property
    def json(self) -> dict[str, Any]:
        return orjson.loads(self.body)  # type: ignore[no-any-return]

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.json["events"])

    @property
    def event_ids(self) -> list[str]:
        return [event["event_id"] for event in self.events]


Answer = tuple[int, Any, dict[str, str]]  # status, JSON body or bytes, headers


class FakeReceiver:
    """Answers 401 to a request whose signature does not verify with `secret`; otherwise the
    scripted answers in order, then 200. `refuse` names event ids it answers 422 for."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.verify = published_verify()
        self.requests: list[Received] = []
        self.accepted: list[Received] = []
        self.refuse: set[str] = set()
        self.hold: asyncio.Event | None = None  # while set to an unset event: no answer
        self._script: deque[Answer] = deque()
        self.app = web.Application()
        self.app.router.add_post("/hook", self._hook)
        self.app.router.add_post("/moved", self._moved)
        self.url = ""

    def script(self, *answers: Answer) -> None:
        self._script.extend(answers)

    @property
    def event_ids(self) -> list[str]:
        return [event_id for request in self.accepted for event_id in request.event_ids]

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified = self.verify(self.secret, body, headers.get("X-Gateway-Signature", ""),
                               headers.get("X-Gateway-Timestamp", ""))
        received = Received(body, headers, verified)
        self.requests.append(received)
        if self.hold is not None:
            await self.hold.wait()
        if not verified:
            return web.json_response({"error": "invalid signature"}, status=401)
        if self._script:
            status, answer, extra = self._script.popleft()
            if isinstance(answer, bytes):
                return web.Response(body=answer, status=status, headers=extra)
            return web.json_response(answer, status=status, headers=extra)
        refused = [e for e in received.event_ids if e in self.refuse]
        if refused:
            return web.json_response({"error": {"message": f"event {refused[0]} refused: "
                                                "custom_data.value must be a number"}},
                                     status=422)
        self.accepted.append(received)
        return web.json_response({"ok": True})

    async def _moved(self, request: web.Request) -> web.Response:
        self.requests.append(Received(await request.read(), dict(request.headers), False))
        raise web.HTTPFound(location="/hook")
