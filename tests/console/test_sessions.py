"""Console sessions kept in the store: signed in on one worker, signed in on all; signed out on
one, refused on all (an open live stream too); the store keeps only the token's SHA-256; `seen`
written at most once a minute; a new admin key ends every session; ended sessions pruned; wrong
sign-ins throttled per address and logged at most once a while with a count."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer

from gateway import appkeys
from gateway.accesskeys import FAILURE_LIMIT, key_sha256
from gateway.admin import iso
from gateway.app import create_app
from gateway.console.guard import SESSIONS
from gateway.console.sessions import COOKIE, IDLE_SECONDS, KIND, SEEN_EVERY_SECONDS
from gateway.console.signins import SignIns
from gateway.console.stream import SESSION_CHECK_SECONDS
from gateway.settings import Settings

from ..conftest import FakeClock, wait_until
from ..fake_graph import FakeGraph
from .conftest import ADMIN_KEY, console_settings
from .test_api import csrf_of, session_of, sign_in

Client = TestClient[Any, Any]
OTHER_ADMIN_KEY = "another-admin-key-for-the-session-tests-0123"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def settings(tmp_path: Path, fake_graph: FakeGraph) -> Settings:
    return console_settings(tmp_path, fake_graph.url,  # type: ignore[attr-defined]
                            server="server: {trusted_proxies: [loopback]}\n")


async def start(settings: Settings, aiohttp_client: Any, clock: FakeClock,
                worker: int) -> Client:
    app = create_app(settings, clock=clock, worker=worker)
    return await aiohttp_client(  # type: ignore[no-any-return]
        TestServer(app), cookie_jar=DummyCookieJar())


@pytest.fixture
async def two(settings: Settings, aiohttp_client: Any,
              clock: FakeClock) -> tuple[Client, Client]:
    """Two workers of one gateway sharing its store."""
    return (await start(settings, aiohttp_client, clock, 0),
            await start(settings, aiohttp_client, clock, 1))


async def test_signed_in_on_one_worker_is_signed_in_on_the_other_until_signed_out(
    two: tuple[Client, Client], clock: FakeClock
) -> None:
    here, there = two
    cookie = session_of(await sign_in(here))
    answer = await there.get("/admin/api/session", headers=cookie)
    assert answer.status == 200 and (await answer.json())["worker"]["index"] == 1
    csrf = await csrf_of(there, cookie)
    assert csrf == await csrf_of(here, cookie)  # bound to the session, not to a process
    write = {**cookie, "X-CSRF-Token": csrf}
    assert (await there.post("/admin/api/dead-letters/replay", headers=write)).status == 200

    stream = await here.get("/admin/api/events/stream", headers=cookie)
    assert stream.status == 200
    assert (await there.post("/admin/sign-out", headers=write)).status == 204
    for client in (here, there):  # at once, everywhere
        assert (await client.get("/admin/api/session", headers=cookie)).status == 401
        assert (await client.post("/admin/api/dead-letters/replay",
                                  headers=write)).status == 401
    # The open stream on the other worker ends once it reads its session again.
    clock.now += SESSION_CHECK_SECONDS
    async with asyncio.timeout(5):
        while await stream.content.readany():
            pass
    assert stream.content.at_eof()


async def test_the_store_keeps_only_the_token_digest_and_seen_at_most_once_a_minute(
    two: tuple[Client, Client], clock: FakeClock
) -> None:
    here, there = two
    set_cookie = await sign_in(here)
    token = set_cookie.split(";")[0].removeprefix(f"{COOKIE}=")
    outbox = here.app[appkeys.OUTBOX]
    [record] = await outbox.console_records(KIND)
    assert record.name == key_sha256(token) and record.secret is None
    assert token not in record.body
    first = orjson.loads(record.body)["seen"]
    assert token.encode() not in here.app[appkeys.SETTINGS].storage.path.read_bytes()

    cookie = session_of(set_cookie)
    clock.now += SEEN_EVERY_SECONDS - 1
    for client in (here, there, here):
        assert (await client.get("/admin/api/status", headers=cookie)).status == 200
    record = await outbox.console_record(KIND, key_sha256(token))
    assert record is not None and orjson.loads(record.body)["seen"] == first  # no write yet
    versions = await outbox.console_versions()
    clock.now += 1
    for client in (there, here, there):
        assert (await client.get("/admin/api/status", headers=cookie)).status == 200
    record = await outbox.console_record(KIND, key_sha256(token))
    assert record is not None and orjson.loads(record.body)["seen"] == int(clock.now)
    assert (await outbox.console_versions())[KIND] == versions[KIND] + 1  # one write
    answer = await (await there.get("/admin/api/session", headers=cookie)).json()
    assert answer["expires_at"] == iso(int(clock.now) + IDLE_SECONDS)


async def test_ended_sessions_are_pruned(two: tuple[Client, Client], clock: FakeClock) -> None:
    here, _ = two
    idle = session_of(await sign_in(here))
    clock.now += IDLE_SECONDS / 2
    active = session_of(await sign_in(here))
    clock.now += IDLE_SECONDS / 2 + 1
    assert (await here.get("/admin/api/session", headers=idle)).status == 401
    assert await here.app[SESSIONS].prune() == 1
    assert len(await here.app[appkeys.OUTBOX].console_records(KIND)) == 1
    assert (await here.get("/admin/api/session", headers=active)).status == 200


async def test_a_new_admin_key_ends_every_session(
    two: tuple[Client, Client], tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any,
    clock: FakeClock
) -> None:
    here, _ = two
    cookie = session_of(await sign_in(here))
    renewed = console_settings(
        tmp_path, fake_graph.url,  # type: ignore[attr-defined]
        admin=f"admin: {{key_sha256: {key_sha256(OTHER_ADMIN_KEY)}, listen: ''}}\n")
    restarted = await start(renewed, aiohttp_client, clock, 2)
    assert (await restarted.get("/admin/api/session", headers=cookie)).status == 401
    assert (await here.get("/admin/api/session", headers=cookie)).status == 200


async def test_wrong_sign_ins_are_throttled_per_address_and_logged_with_a_count(
    two: tuple[Client, Client], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    here, there = two
    caplog.set_level(logging.WARNING, logger="gateway.console")
    attacker = {"X-Forwarded-For": "198.51.100.7"}  # from the trusted (loopback) proxy
    typed = [f"guess-{n}-of-the-admin-key" for n in range(FAILURE_LIMIT)]
    for key in typed:
        answer = await here.post("/admin/sign-in", data={"key": key}, headers=attacker,
                                 allow_redirects=False)
        assert answer.status == 303 and answer.headers["Location"] == "/admin/?signin=failed"
    # Blocked now, even with the right key; another address is not.
    answer = await here.post("/admin/sign-in", data={"key": ADMIN_KEY}, headers=attacker,
                             allow_redirects=False)
    assert answer.status == 429 and int(answer.headers["Retry-After"]) > 0
    assert "try again" in (await answer.json())["error"] and "Set-Cookie" not in answer.headers
    assert (await here.post("/admin/sign-in", data={"key": ADMIN_KEY},
                            headers={"X-Forwarded-For": "198.51.100.8"},
                            allow_redirects=False)).status == 303
    clock.now += 61
    assert (await here.post("/admin/sign-in", data={"key": ADMIN_KEY}, headers=attacker,
                            allow_redirects=False)).status == 303
    # Six refusals, one line so far (the rest come as one count a minute later).
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("gateway.console")]
    assert len(lines) == 1 and "198.51.100.7" in lines[0]
    assert not any(key in line for line in lines for key in typed)
    assert (await there.post("/admin/sign-in", data={"key": typed[0]}, headers=attacker,
                             allow_redirects=False)).status == 303  # each process its own


async def test_refused_sign_ins_after_the_first_are_told_as_one_count(
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.console")
    sign_ins = SignIns(FakeClock(), log_every=0.05)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "gateway.console.signins"]

    for client in ("192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.1"):
        sign_ins.failed(client)
    assert len(lines()) == 1
    await wait_until(lambda: len(lines()) == 2)
    assert "3 more sign-ins refused (3 with a wrong admin key, 0 throttled) from 2 addresses" \
        in lines()[1]
    await asyncio.sleep(0.15)  # a quiet window: nothing more to tell
    assert len(lines()) == 2
    sign_ins.failed("192.0.2.3")  # after a quiet while, told at once again
    assert len(lines()) == 3 and "192.0.2.3" in lines()[2]
    sign_ins.close()


@pytest.mark.parametrize("content_type, body", [
    ("multipart/form-data", b"key=x"),  # no boundary
    ("multipart/form-data; boundary=b", b"--b\r\nnot a part header\r\n\r\nx\r\n--b--\r\n"),
    ("application/x-www-form-urlencoded; charset=bogus", b"key=x"),
])
async def test_a_sign_in_form_that_cannot_be_read_is_a_400_that_counts_as_a_failure(
    two: tuple[Client, Client], content_type: str, body: bytes,
) -> None:
    here, _ = two
    for _ in range(FAILURE_LIMIT):
        answer = await here.post("/admin/sign-in", data=body,
                                 headers={"Content-Type": content_type}, allow_redirects=False)
        assert answer.status == 400 and "form field `key`" in (await answer.json())["error"]
        assert "Set-Cookie" not in answer.headers
    # Each counted as a wrong sign-in: the address is throttled now, even with the right key.
    answer = await here.post("/admin/sign-in", data={"key": ADMIN_KEY}, allow_redirects=False)
    assert answer.status == 429
