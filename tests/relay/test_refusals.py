"""A refusal of the destination itself (Meta's pixel, app or permission errors) pauses it with
an alert, as a refused token does, instead of splitting the batch into a dead letter per
event; one event's refusal is still isolated by bisection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway import appkeys
from gateway.app import create_app
from gateway.config import load_settings
from gateway.storage import OutboxEntry, open_outbox

from ..conftest import (
    PIXEL_A,
    destination_yaml,
    graph_server,
    operator_listener,
    settings_yaml,
    wait_until,
)
from ..conftest import outbox_rows as rows

UNSUPPORTED = {"error": {
    "message": f"Unsupported post request. Object with ID '{PIXEL_A}' does not exist, cannot be "
               "loaded due to missing permissions, or does not support this operation",
    "type": "GraphMethodException", "code": 100, "error_subcode": 33, "fbtrace_id": "Px"}}


async def queue(settings: Any, count: int) -> None:
    outbox = await open_outbox(settings.storage, clock=time.time)
    now = time.time()
    try:
        await outbox.enqueue([
            OutboxEntry("main", PIXEL_A, "", "Purchase", f"e{n}", int(now),
                        orjson.dumps({"event_name": "Purchase", "event_id": f"e{n}"}),
                        expires_at=now + 3600)
            for n in range(count)])
    finally:
        await outbox.close()


@pytest.mark.parametrize("refusal", [
    UNSUPPORTED,
    {"error": {"message": "Application does not have permission for this action",
               "type": "OAuthException", "code": 10, "fbtrace_id": "Px"}},
    {"error": {"message": "Permissions error", "type": "OAuthException", "code": 200,
               "fbtrace_id": "Px"}},
])
async def test_a_refused_pixel_pauses_the_destination_instead_of_bisecting(
    tmp_path: Path, aiohttp_server: Any, aiohttp_client: Any, refusal: dict[str, Any],
) -> None:
    requests: list[int] = []
    alerts: list[dict[str, Any]] = []

    async def graph(request: web.Request) -> web.Response:
        events = orjson.loads(await request.read())["data"]
        requests.append(len(events))
        if request.query["access_token"] == "TEST-TOKEN-main":
            return web.json_response(refusal, status=400 if refusal["error"]["code"] == 100
                                     else 403)
        return web.json_response({"events_received": len(events)})

    async def webhook(request: web.Request) -> web.Response:
        alerts.append(await request.json())
        return web.Response(status=204)

    url = await graph_server(aiohttp_server, graph)
    hook_app = web.Application()
    hook_app.router.add_post("/hook", webhook)
    hook = await aiohttp_server(hook_app)
    config = tmp_path / "config.yaml"
    text = settings_yaml(tmp_path, destination_yaml("main", url, pixel_id=PIXEL_A,
                                                     max_in_flight=1),
                         extra=f"alerts: {{webhook_url: {hook.make_url('/hook')}}}\n")
    config.write_text(text)
    settings = load_settings(config, env={})
    await queue(settings, 200)
    client = operator_listener(await aiohttp_client(create_app(settings)))
    await wait_until(lambda: len(alerts) == 1)
    assert alerts[0]["alert"] == "destination_refused" and alerts[0]["destination"] == "main"
    assert "TEST-TOKEN" not in orjson.dumps(alerts).decode()
    [worker] = client.app[appkeys.RELAYS]
    assert worker.state == "paused"
    await wait_until(lambda: {r["state"] for r in rows(settings)} == {"pending"})
    assert requests == [200]  # one request, not a bisection down to 200 dead letters
    status = await (await client.get("/status")).json()
    [main] = status["destinations"]
    assert main["state"] == "paused" and f"code {refusal['error']['code']}" in main["last_error"]
    # Not a token problem: whoever alerts on token_invalid is not told to rotate the token.
    assert main["token_invalid"] is False
    assert main["paused_reason"] == "Meta refused the destination"

    # Someone puts in a token of a system user the pixel is shared with: delivery resumes,
    # nothing was lost.
    config.write_text(text.replace("TEST-TOKEN-main", "TOKEN-WITH-ACCESS"))
    assert await client.app[appkeys.RELOADER].reload()
    await wait_until(lambda: {r["state"] for r in rows(settings)} == {"delivered"})
    assert sum(requests[1:]) == 200 and worker.state == "active"
