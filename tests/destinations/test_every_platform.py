"""One browser hit reaches Meta, TikTok, GA4, Snapchat, Pinterest and a webhook, each in its own
wire format, with the same event id, personal data hashed (never raw); a platform that refuses
its credentials pauses alone."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from gateway import appkeys
from gateway.config import load_settings

from ..conftest import PIXEL_A, GatewayFactory, destination_yaml, settings_yaml, wait_until
from ..conftest import outbox_rows as rows
from ..fake_graph import FakeGraph
from .fake_ga4 import FakeGa4
from .fake_pinterest import FakePinterest
from .fake_snapchat import FakeSnap
from .fake_tiktok import FakeTikTok
from .fake_webhook import FakeReceiver
from .test_ga4 import ga4_yaml
from .test_pinterest import TOKEN as PINTEREST_TOKEN
from .test_pinterest import pinterest_yaml
from .test_snapchat import snap_yaml
from .test_tiktok import TOKEN as TIKTOK_TOKEN
from .test_tiktok import tiktok_yaml
from .test_webhook import SECRET as WEBHOOK_SECRET
from .test_webhook import webhook_yaml

EMAIL = " Joe.Smith@Example.COM "
EMAIL_HASH = hashlib.sha256(b"joe.smith@example.com").hexdigest()  # Meta's, TikTok's, Snap's


async def serve(aiohttp_server: Any, fake: Any, path: str = "") -> Any:
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url(path)).rstrip("/")
    return fake


async def test_one_hit_reaches_every_platform_in_its_own_format(
    tmp_path: Path, aiohttp_server: Any, fake_graph: FakeGraph, start_gateway: GatewayFactory,
) -> None:
    tiktok = await serve(aiohttp_server, FakeTikTok(TIKTOK_TOKEN))
    ga4 = await serve(aiohttp_server, FakeGa4())
    snap = await serve(aiohttp_server, FakeSnap())
    pinterest = await serve(aiohttp_server, FakePinterest(PINTEREST_TOKEN))
    hook = await serve(aiohttp_server, FakeReceiver(WEBHOOK_SECRET), "/hook")
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        tiktok_yaml("tiktok", tiktok.url), ga4_yaml("ga4", ga4.url),
        snap_yaml("snap", snap.url), pinterest_yaml("pinterest", pinterest.url),
        webhook_yaml("hook", hook.url)))
    settings = load_settings(config, env={})
    client = await start_gateway(settings)
    page = "https://www.shop.example/landing?utm_source=tt&ttclid=E.C.P.CwAbCd-123"
    response = await client.get(
        "/tr", params={"id": PIXEL_A, "ev": "Purchase", "eid": "order-1", "dl": page,
                       "ud[em]": EMAIL, "cd[value]": "19.90", "cd[currency]": "EUR"},
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)", "Host": "www.shop.example",
                 "Cookie": "_ga=GA1.1.1234567890.1700000000"})
    assert response.status == 200
    await wait_until(lambda: bool(fake_graph.events and tiktok.events and ga4.events
                                  and snap.events and pinterest.received() and hook.accepted))

    [meta_event] = fake_graph.events
    [tiktok_event] = tiktok.events
    [ga4_request] = ga4.accepted
    [snap_event] = snap.events
    [pinterest_event] = pinterest.received()
    [hook_event] = hook.accepted[0].events
    assert {meta_event["event_id"], tiktok_event["event_id"], snap_event["event_id"],
            pinterest_event["event_id"], hook_event["event_id"],
            ga4_request.events[0]["params"]["transaction_id"]} == {"order-1"}
    assert meta_event["event_name"] == "Purchase" and meta_event["user_data"]["em"] == EMAIL_HASH
    assert tiktok_event["event"] == "Purchase"
    assert tiktok_event["user"]["email"] == EMAIL_HASH
    assert tiktok_event["user"]["ttclid"] == "E.C.P.CwAbCd-123"
    assert tiktok_event["properties"]["value"] == 19.9
    assert ga4_request.body["client_id"] == "1234567890.1700000000"  # from the _ga cookie
    assert ga4_request.events[0]["name"] == "purchase"
    assert ga4_request.events[0]["params"]["value"] == 19.9
    assert ga4_request.body["user_data"]["sha256_email_address"] == [EMAIL_HASH]
    assert snap_event["event_name"] == "PURCHASE" and snap_event["user_data"]["em"] == [EMAIL_HASH]
    assert pinterest_event["event_name"] == "checkout"
    assert pinterest_event["user_data"]["em"] == [EMAIL_HASH]
    assert hook_event["user_data"]["em"] == EMAIL_HASH and hook.accepted[0].verified
    # Each platform's first-party cookie is set or renewed on the visitor's answer.
    assert {"_fbp", "_ttp", "_ga", "_scid"} <= set(response.cookies)
    assert response.cookies["_ga"].value == "GA1.1.1234567890.1700000000"
    stored = " ".join(str(r["payload"]) + str(r["context"]) for r in rows(settings))
    assert "joe.smith" not in stored.lower()  # hashed once at ingest, never stored raw

    # A refused token on one platform pauses that one only.
    tiktok.script((200, {"code": 40001, "message": "Access token is invalid",
                         "request_id": "r1"}))
    again = await client.get(
        "/tr", params={"id": PIXEL_A, "ev": "Lead", "eid": "lead-2", "dl": page},
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)", "Host": "www.shop.example"})
    assert again.status == 200
    workers = {w.name: w for w in client.app[appkeys.RELAYS]}
    await wait_until(lambda: workers["tiktok"].state == "paused")
    await wait_until(lambda: len(fake_graph.events) == 2 and len(snap.events) == 2
                     and len(pinterest.received()) == 2 and len(hook.accepted) == 2
                     and len(ga4.accepted) == 2)
    assert {name: w.state for name, w in workers.items() if name != "tiktok"} == dict.fromkeys(
        ("meta", "ga4", "snap", "pinterest", "hook"), "active")
