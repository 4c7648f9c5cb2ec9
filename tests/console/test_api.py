"""The console's JSON API: off without an admin key, sign-in and its cookie, the API by cookie
(+ CSRF on writes) or bearer key, session expiry and sign-out, secrets in no answer, and the
live events stream (a hit within a second; a slow watcher never holds ingest up)."""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from gateway import appkeys
from gateway.accesskeys import key_sha256
from gateway.app import create_app
from gateway.console.sessions import ABSOLUTE_SECONDS, COOKIE, IDLE_SECONDS
from gateway.console.stream import HEARTBEAT_SECONDS
from gateway.mintkeys import add_keys_parser, run_keys

from ..conftest import PIXEL_A, FakeClock, wait_until
from ..fake_graph import FakeGraph
from .conftest import ADMIN_KEY, BEARER, console_settings

TOKEN = "TEST-TOKEN-main"  # destination_yaml's access token for "main"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
async def console(tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any,
                  clock: FakeClock) -> TestClient[Any, Any]:
    settings = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    # No cookie jar: each test sends the cookie it means to.
    return await aiohttp_client(  # type: ignore[no-any-return]
        TestServer(create_app(settings, clock=clock)), cookie_jar=DummyCookieJar())


async def sign_in(client: TestClient[Any, Any], headers: dict[str, str] | None = None) -> str:
    """Sign in through the form; the session cookie's whole Set-Cookie header."""
    answer = await client.post("/admin/sign-in", data={"key": ADMIN_KEY}, headers=headers,
                               allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == "/admin/"
    [cookie] = answer.headers.getall("Set-Cookie")
    return cookie


def session_of(set_cookie: str) -> dict[str, str]:
    """The Cookie header a browser would send back."""
    return {"Cookie": set_cookie.split(";")[0]}


async def csrf_of(client: TestClient[Any, Any], cookie: dict[str, str]) -> str:
    answer = await client.get("/admin/api/session", headers=cookie)
    assert answer.status == 200
    token = (await answer.json())["csrf_token"]
    assert isinstance(token, str) and len(token) >= 32
    return token


async def hit(client: TestClient[Any, Any], event_id: str, **params: str) -> None:
    answer = await client.get("/tr", params={
        "id": PIXEL_A, "ev": "Lead", "eid": event_id, "dl": "https://shop.example.com/p",
        "ud[em]": "visitor@example.com", **params})
    assert answer.status == 200


# -- on and off ---------------------------------------------------------------------------------
async def test_without_an_admin_key_the_console_is_off_and_says_how_to_turn_it_on(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    settings = console_settings(tmp_path, fake_graph.url,  # type: ignore[attr-defined]
                                admin="admin: {listen: ''}\n")
    client = await aiohttp_client(TestServer(create_app(settings)))
    page = await client.get("/admin/")
    html = await page.text()
    assert page.status == 200 and "The console is off" in html
    assert "tag-gateway keys admin" in html and 'name="key"' not in html
    for method, path in (("GET", "/admin/api/destinations"), ("GET", "/admin/api/session"),
                         ("POST", "/admin/sign-in")):
        answer = await client.request(method, path, headers=BEARER)
        assert answer.status == 403
        assert "tag-gateway keys admin" in (await answer.json())["error"]


async def test_keys_admin_prints_a_key_once_and_the_line_that_turns_the_console_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fake_graph: FakeGraph,
    aiohttp_client: Any
) -> None:
    parser = argparse.ArgumentParser(prog="tag-gateway")
    add_keys_parser(parser.add_subparsers(dest="command", required=True))
    assert run_keys(parser.parse_args(["keys", "admin"])) == 0
    printed = capsys.readouterr().out
    [key] = re.findall(r"^    (\S{43})$", printed, re.MULTILINE)
    assert printed.count(key) == 1
    section = printed[printed.index("admin:\n"):].split("\n\n")[0]  # pasted as printed
    assert section == f"admin:\n  key_sha256: {key_sha256(key)}"
    settings = console_settings(tmp_path, fake_graph.url,  # type: ignore[attr-defined]
                                admin=section.replace("admin:\n", "admin:\n  listen: ''\n") + "\n")
    client = await aiohttp_client(TestServer(create_app(settings)))
    answer = await client.post("/admin/sign-in", data={"key": key}, allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == "/admin/"
    assert COOKIE in answer.headers["Set-Cookie"]


async def test_the_page_and_its_files_are_served_with_a_strict_policy(
    console: TestClient[Any, Any]
) -> None:
    page = await console.get("/admin/")
    html = await page.text()
    assert page.status == 200 and 'name="key"' in html and 'src="console.js"' in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        answer = await console.get(f"/admin/{name}")
        assert answer.status == 200 and answer.content_type == kind
    bare = await console.get("/admin", allow_redirects=False)
    assert bare.status == 302 and bare.headers["Location"] == "/admin/"


# -- signing in -----------------------------------------------------------------------------------
async def test_a_wrong_key_gets_no_cookie(console: TestClient[Any, Any]) -> None:
    for key in ("wrong", "", ADMIN_KEY + "x", "ä" * 10):
        answer = await console.post("/admin/sign-in", data={"key": key}, allow_redirects=False)
        assert answer.status == 303
        assert answer.headers["Location"] == "/admin/?signin=failed"
        assert "Set-Cookie" not in answer.headers


async def test_the_session_cookie_is_httponly_strict_and_on_the_console_path_only(
    console: TestClient[Any, Any]
) -> None:
    cookie = await sign_in(console)
    attributes = [part.strip() for part in cookie.split(";")]
    name, _, token = attributes[0].partition("=")
    assert name == COOKIE and token and ADMIN_KEY not in token
    assert key_sha256(ADMIN_KEY) not in token
    assert "HttpOnly" in attributes and "SameSite=Strict" in attributes
    assert "Path=/admin/" in attributes
    assert "Secure" not in attributes  # plain http, no trusted proxy
    # X-Forwarded-Proto from a peer that is not a trusted proxy is not believed.
    assert "Secure" not in await sign_in(console, {"X-Forwarded-Proto": "https"})


async def test_behind_a_trusted_https_proxy_the_cookie_is_secure(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    settings = console_settings(tmp_path, fake_graph.url,  # type: ignore[attr-defined]
                                server="server: {trusted_proxies: [loopback], "
                                       "path_prefix: /gw}\n")
    client = await aiohttp_client(TestServer(create_app(settings)))
    answer = await client.post("/gw/admin/sign-in", data={"key": ADMIN_KEY},
                               headers={"X-Forwarded-Proto": "https"}, allow_redirects=False)
    assert answer.headers["Location"] == "/gw/admin/"
    attributes = [part.strip() for part in answer.headers["Set-Cookie"].split(";")]
    assert "Secure" in attributes and "Path=/gw/admin/" in attributes


# -- the API: cookie, CSRF, bearer ---------------------------------------------------------------
async def test_the_api_wants_a_session_or_the_admin_key(console: TestClient[Any, Any]) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": f"{COOKIE}=v1.x.1.1.sig"}):
        answer = await console.get("/admin/api/destinations", headers=headers)
        assert answer.status == 401 and "error" in await answer.json()
    by_key = await console.get("/admin/api/destinations", headers=BEARER)
    by_cookie = await console.get("/admin/api/destinations",
                                  headers=session_of(await sign_in(console)))
    assert by_key.status == by_cookie.status == 200
    [main] = await by_cookie.json()
    assert main["name"] == "main" and main["type"] == "meta_capi"
    assert main["source"] == "config" and main["state"] == "active"
    assert main["token_set"] is True and main["queued"] == 0 and main["dead"] == 0
    assert main["last_error"] is None and "last_delivery" in main
    assert by_cookie.headers["Cache-Control"] == "no-store"
    # Behind a proxy that adds its own Basic auth, the session cookie still counts.
    behind = await console.get("/admin/api/destinations", headers={
        **session_of(await sign_in(console)), "Authorization": "Basic dXNlcjpwYXNz"})
    assert behind.status == 200


async def test_a_change_without_the_csrf_token_is_refused(console: TestClient[Any, Any]) -> None:
    cookie = session_of(await sign_in(console))
    for headers in (cookie, {**cookie, "X-CSRF-Token": "forged"},
                    {**cookie, "X-CSRF-Token": "é"}):
        answer = await console.post("/admin/api/dead-letters/replay", headers=headers)
        assert answer.status == 403
        assert "X-CSRF-Token" in (await answer.json())["error"]
        signed_out = await console.post("/admin/sign-out", headers=headers)
        assert signed_out.status == 403
    token = await csrf_of(console, cookie)
    answer = await console.post("/admin/api/dead-letters/replay",
                                headers={**cookie, "X-CSRF-Token": token})
    assert answer.status == 200 and await answer.json() == {"replayed": 0}
    # Another session's token does not fit this one.
    other = await csrf_of(console, session_of(await sign_in(console)))
    answer = await console.post("/admin/api/dead-letters/replay",
                                headers={**cookie, "X-CSRF-Token": other})
    assert answer.status == 403
    # The admin key as a bearer token needs none.
    answer = await console.post("/admin/api/dead-letters/replay", headers=BEARER)
    assert answer.status == 200


async def test_dead_letters_answer_as_the_operator_routes_do(
    console: TestClient[Any, Any]
) -> None:
    for path in ("/dead-letters?reason=nope", "/dead-letters?limit=0",
                 "/dead-letters?destinaton=main", "/dead-letters"):
        mine = await console.get("/admin/api" + path, headers=BEARER)
        theirs = await console.get(path, headers=BEARER)
        assert mine.status == theirs.status
        assert await mine.json() == await theirs.json()


async def test_a_session_ends_when_idle_and_after_its_absolute_lifetime(
    console: TestClient[Any, Any], clock: FakeClock
) -> None:
    cookie = session_of(await sign_in(console))
    clock.now += IDLE_SECONDS - 10
    assert (await console.get("/admin/api/session", headers=cookie)).status == 200
    clock.now += IDLE_SECONDS - 10  # idle counts from the last request
    assert (await console.get("/admin/api/session", headers=cookie)).status == 200
    clock.now += IDLE_SECONDS
    assert (await console.get("/admin/api/session", headers=cookie)).status == 401

    # Active all along: the same cookie, but never past the absolute lifetime.
    set_cookie = await sign_in(console)
    assert f"Max-Age={ABSOLUTE_SECONDS};" in set_cookie
    cookie = session_of(set_cookie)
    started = clock.now
    while clock.now - started < ABSOLUTE_SECONDS - IDLE_SECONDS / 2:
        clock.now += IDLE_SECONDS / 2
        answer = await console.get("/admin/api/session", headers=cookie)
        assert answer.status == 200 and "Set-Cookie" not in answer.headers
    clock.now = started + ABSOLUTE_SECONDS
    assert (await console.get("/admin/api/session", headers=cookie)).status == 401


async def test_sign_out_clears_the_cookie_and_ends_the_session(
    console: TestClient[Any, Any]
) -> None:
    cookie = session_of(await sign_in(console))
    token = await csrf_of(console, cookie)
    answer = await console.post("/admin/sign-out", headers={**cookie, "X-CSRF-Token": token})
    assert answer.status == 204
    cleared = answer.headers["Set-Cookie"]
    assert cleared.startswith(f"{COOKIE}=;") and "Max-Age=0" in cleared
    assert (await console.get("/admin/api/session", headers=cookie)).status == 401


async def test_no_answer_carries_a_token_or_the_admin_key(
    console: TestClient[Any, Any], fake_graph: FakeGraph
) -> None:
    cookie = session_of(await sign_in(console))
    stream = await console.get("/admin/api/events/stream", headers=cookie)
    await hit(console, "secret-check-1")
    await wait_until(lambda: len(fake_graph.events) == 1)
    seen = b""
    async with asyncio.timeout(5):
        while b"event: outgoing" not in seen:
            seen += await stream.content.readany()
    stream.close()
    answers = [seen]
    for path in ("session", "status", "destinations", "dead-letters", "rules"):
        for headers in (cookie, BEARER):
            answer = await console.get(f"/admin/api/{path}", headers=headers)
            assert answer.status == 200
            answers.append(await answer.read())
    answers.append(await (await console.get("/admin/")).read())
    for body in answers:
        for secret in (TOKEN, ADMIN_KEY, key_sha256(ADMIN_KEY), "visitor@example.com"):
            assert secret.encode() not in body


async def test_rules_show_the_tests_and_the_last_reload_error_with_its_place(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    rules = tmp_path / "rules"
    (rules / "tests").mkdir(parents=True)
    (rules / "10-bots.yaml").write_text(
        "version: 1\nrules:\n  - name: drop-bots\n    when: {context.ua.is_bot: true}\n"
        "    drop: true\n")
    (rules / "tests" / "bots.yaml").write_text(
        "cases:\n  - name: a person is kept\n    event: {event_name: PageView}\n"
        "    expect: {dropped: false}\n")
    settings = console_settings(tmp_path, fake_graph.url,  # type: ignore[attr-defined]
                                server=f"rules: {{path: {rules}}}\n")
    client = await aiohttp_client(TestServer(create_app(settings)))
    answer = await (await client.get("/admin/api/rules", headers=BEARER)).json()
    assert [r["name"] for r in answer["rules"]] == ["drop-bots"]
    assert [name.rpartition("/")[2] for name in answer["files"]] == ["10-bots.yaml"]
    assert [(t["name"], t["passed"]) for t in answer["tests"]] == [("a person is kept", True)]
    assert answer["last_error"] is None and answer["last_error_problems"] == []
    (rules / "20-broken.yaml").write_text(
        "version: 1\nrules:\n  - name: broken\n    drop: maybe\n")
    assert not await client.app[appkeys.RULES].reload()
    answer = await (await client.get("/admin/api/rules", headers=BEARER)).json()
    [problem] = answer["last_error_problems"]
    assert problem["file"].endswith("20-broken.yaml") and problem["line"] == 4
    assert answer["rules"][0]["name"] == "drop-bots"  # the last good set keeps serving


# -- live events --------------------------------------------------------------------------------
async def read_event(stream: Any, kind: str) -> dict[str, Any]:
    """The next event of `kind` on a server-sent events stream."""
    wanted = False
    while True:
        line = (await stream.content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            wanted = line == f"event: {kind}"
        elif line.startswith("data: ") and wanted:
            item: dict[str, Any] = orjson.loads(line[6:])
            return item


async def test_the_stream_shows_a_hit_within_a_second_and_its_delivery(
    console: TestClient[Any, Any], fake_graph: FakeGraph
) -> None:
    stream = await console.get("/admin/api/events/stream", headers=BEARER)
    assert stream.status == 200 and stream.content_type == "text/event-stream"
    sent = time.monotonic()
    await hit(console, "live-1", **{"cd[value]": "3", "cd[currency]": "EUR"})
    async with asyncio.timeout(1.0):
        incoming = await read_event(stream, "incoming")
    assert time.monotonic() - sent < 1.0
    assert incoming["source"] == "browser" and incoming["pixel"] == PIXEL_A
    assert incoming["event_name"] == "Lead" and incoming["event_id"] == "live-1"
    assert incoming["outcome"] == "routed" and incoming["destinations"] == ["main"]
    assert "em" in incoming["user_data"] and incoming["worker"] == 0
    async with asyncio.timeout(5):
        outgoing = await read_event(stream, "outgoing")
    assert outgoing["destination"] == "main" and outgoing["outcome"] == "delivered"
    assert outgoing["event_ids"] == ["live-1"] and "answered" in outgoing["answer"]
    # A refused hit is told with its reason.
    refused = await console.get("/tr", params={"ev": "Lead"})
    assert refused.status == 400
    async with asyncio.timeout(1.0):
        told = await read_event(stream, "incoming")
    assert told["outcome"] == "refused" and told["reasons"]
    stream.close()
    await wait_until(lambda: not console.app[appkeys.EVENTS].listening)


async def test_a_slow_watcher_loses_events_and_is_told_but_never_holds_ingest_up(
    console: TestClient[Any, Any]
) -> None:
    bus = console.app[appkeys.EVENTS]
    slow = bus.subscribe(size=3)  # never read while the hits arrive
    for index in range(10):
        await hit(console, f"slow-{index}")
    lost = slow.lost  # the relay's deliveries may have been told too
    assert lost >= 7
    got = [await slow.get(0) for _ in range(5)]
    assert got[0] is not None and got[0]["event_id"] == "slow-0"
    assert all(item is not None and item["kind"] in ("incoming", "outgoing")
               for item in got[:3])
    assert got[3] == {"kind": "lost", "count": lost} and got[4] is None
    bus.unsubscribe(slow)
    assert not bus.listening


async def test_the_stream_shows_server_events_and_refused_requests(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    key = "backend-access-key-for-the-console-tests-00"
    settings = console_settings(
        tmp_path, fake_graph.url,  # type: ignore[attr-defined]
        server=f"access_keys: [{{name: backend, sha256: {key_sha256(key)}, pixels: '*'}}]\n")
    client = await aiohttp_client(TestServer(create_app(settings)))
    stream = await client.get("/admin/api/events/stream", headers=BEARER)
    event = {"event_name": "Purchase", "event_time": int(time.time()) - 60,
             "event_id": "order-7", "action_source": "website",
             "event_source_url": "https://shop.example.com/thanks",
             "user_data": {"em": "buyer@example.com", "client_ip_address": "203.0.113.9",
                           "client_user_agent": "Mozilla/5.0"},
             "custom_data": {"value": 42.5, "currency": "EUR"}}
    answer = await client.post(f"/capi/{PIXEL_A}/events",
                               data=orjson.dumps({"data": [event], "accessKey": key}))
    assert answer.status == 202
    async with asyncio.timeout(1.0):
        told = await read_event(stream, "incoming")
    assert told["source"] == "server" and told["event_id"] == "order-7"
    assert told["outcome"] == "routed" and told["destinations"] == ["main"]
    answer = await client.post(f"/capi/{PIXEL_A}/events",
                               data=orjson.dumps({"data": [event], "accessKey": "wrong"}))
    assert answer.status == 401
    async with asyncio.timeout(1.0):
        told = await read_event(stream, "incoming")
    assert told["source"] == "server" and told["outcome"] == "refused"
    assert told["pixel"] == PIXEL_A and told["reasons"]
    stream.close()
    body = orjson.dumps(told)
    assert b"wrong" not in body and b"buyer@example.com" not in body


async def test_a_watcher_that_goes_away_stops_listening_at_once(
    tmp_path: Path, fake_graph: FakeGraph
) -> None:
    # As `serve` runs it (web.run_app): handlers are not cancelled when their client leaves
    # (the test server would cancel them and hide the difference).
    app = create_app(console_settings(tmp_path, fake_graph.url))  # type: ignore[attr-defined]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        [(host, port)] = [address[:2] for address in runner.addresses]
        bus = app[appkeys.EVENTS]
        async with aiohttp.ClientSession() as session:
            stream = await session.get(f"http://{host}:{port}/admin/api/events/stream",
                                       headers=BEARER)
            assert stream.status == 200 and bus.listening
            stream.close()
            # Nothing is published meanwhile: the stream notices by itself, before a heartbeat.
            await wait_until(lambda: not bus.listening, timeout=HEARTBEAT_SECONDS / 3)
    finally:
        await runner.cleanup()
