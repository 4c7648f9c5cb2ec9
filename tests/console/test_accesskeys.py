"""Access keys from the console: made on one process and accepted by the server ingress of
another sharing the store within about a second (at once on the first), revoked as fast, kept
through config reloads; config keys listed read-only; bad input 400; the key shown once and in
no later answer, log line or /status."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer

from gateway import appkeys
from gateway.accesskeys import key_sha256
from gateway.app import apply_settings, create_app
from gateway.recordwatch import INTERVAL_SECONDS
from gateway.settings import Settings

from ..conftest import PIXEL_A, PIXEL_B, wait_until
from ..fake_graph import FakeGraph
from .conftest import BEARER, console_settings
from .test_api import csrf_of, session_of, sign_in

CONFIG_KEY = "backend-key-from-config-yaml-0123456789abc"
Client = TestClient[Any, Any]


@pytest.fixture
def settings(tmp_path: Path, fake_graph: FakeGraph) -> Settings:
    return console_settings(
        tmp_path, fake_graph.url,  # type: ignore[attr-defined]
        server=f"access_keys: [{{name: backend, sha256: {key_sha256(CONFIG_KEY)}, "
               f"pixels: ['{PIXEL_A}']}}]\n")


@pytest.fixture
async def two(settings: Settings, aiohttp_client: Any) -> tuple[Client, Client]:
    """Two workers of one gateway (`serve --workers 2`): one store, two processes' state."""
    made = []
    for worker in (0, 1):
        made.append(await aiohttp_client(TestServer(create_app(settings, worker=worker)),
                                         cookie_jar=DummyCookieJar()))
    return made[0], made[1]


def event(event_id: str) -> dict[str, Any]:
    return {"event_name": "Lead", "event_time": int(time.time()) - 60,
            "event_id": event_id, "action_source": "website",
            "event_source_url": "https://shop.example.com/thanks",
            "user_data": {"em": "buyer@example.com", "client_ip_address": "203.0.113.9",
                          "client_user_agent": "Mozilla/5.0"}}


async def send(client: Client, key: str, pixel: str = PIXEL_A) -> int:
    """The server ingress's answer to one event sent with `key`."""
    answer = await client.post(f"/capi/{pixel}/events",
                               data=orjson.dumps({"data": [event("e-1")], "accessKey": key}))
    return answer.status


def names(client: Client) -> list[str]:
    """The access keys this process's ingress accepts now."""
    return [key.name for key in client.app[appkeys.ACCESS_KEYS]()]


async def create(client: Client, body: Any, headers: dict[str, str] = BEARER) -> Any:
    answer = await client.post("/admin/api/access-keys", data=orjson.dumps(body),
                               headers=headers)
    return answer.status, await answer.json()


async def test_a_key_made_on_one_worker_is_accepted_by_another_within_a_second(
    two: tuple[Client, Client], caplog: pytest.LogCaptureFixture
) -> None:
    here, there = two
    caplog.set_level(logging.INFO)
    status, made = await create(here, {"name": "shop-backend", "pixels": [PIXEL_A]})
    assert status == 201
    key = made.pop("key")
    assert made == {"name": "shop-backend", "source": "console", "pixels": [PIXEL_A],
                    "created_at": made["created_at"]}
    assert len(key) >= 43 and made["created_at"].endswith("Z")
    assert await send(here, key) == 202  # at once where it was made
    started = time.monotonic()
    await wait_until(lambda: "shop-backend" in names(there), timeout=3 * INTERVAL_SECONDS)
    assert time.monotonic() - started < 2 * INTERVAL_SECONDS
    assert await send(there, key) == 202
    assert await send(there, key, PIXEL_B) == 403  # its scope holds on every worker

    answer = await there.delete("/admin/api/access-keys/shop-backend", headers=BEARER)
    assert answer.status == 204
    assert await send(there, key) == 401  # at once where it was revoked
    started = time.monotonic()
    await wait_until(lambda: "shop-backend" not in names(here), timeout=3 * INTERVAL_SECONDS)
    assert time.monotonic() - started < 2 * INTERVAL_SECONDS
    assert await send(here, key) == 401
    assert await send(here, CONFIG_KEY) == 202  # config keys untouched

    # The key was in the answer that made it and nowhere after: not in a listing, /status,
    # the store or a log line.
    later = [await (await here.get(path, headers=BEARER)).read()
             for path in ("/admin/api/access-keys", "/admin/api/status", "/status")]
    await create(here, {"name": "another", "pixels": "*"})
    later.append(await (await here.get("/admin/api/access-keys", headers=BEARER)).read())
    for body in later:
        assert key.encode() not in body and key_sha256(key).encode() not in body
        assert key_sha256(CONFIG_KEY).encode() not in body
    assert not any(key in record.getMessage() for record in caplog.records)
    assert any("access key 'shop-backend' made" in r.getMessage() for r in caplog.records)
    assert any("access key 'shop-backend' revoked" in r.getMessage() for r in caplog.records)
    stored = here.app[appkeys.SETTINGS].storage.path.read_bytes()
    assert key.encode() not in stored


async def test_the_list_shows_config_keys_read_only_and_console_keys_by_name_and_scope(
    two: tuple[Client, Client]
) -> None:
    here, _ = two
    assert (await create(here, {"name": "every-pixel", "pixels": "*"}))[0] == 201
    assert (await create(here, {"name": "a-few", "pixels": [PIXEL_B, PIXEL_A, PIXEL_A]}))[0] == 201
    answer = await here.get("/admin/api/access-keys", headers=BEARER)
    listed = await answer.json()
    assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
    for key in listed:
        assert set(key) <= {"name", "source", "pixels", "created_at"}
    assert [(k["name"], k["source"], k["pixels"]) for k in listed] == [
        ("backend", "config", [PIXEL_A]),
        ("a-few", "console", sorted([PIXEL_A, PIXEL_B])),
        ("every-pixel", "console", "*"),
    ]

    # A config key is not the console's to revoke; an unknown name is not found.
    answer = await here.delete("/admin/api/access-keys/backend", headers=BEARER)
    assert answer.status == 409 and "config.yaml" in (await answer.json())["error"]
    assert await send(here, CONFIG_KEY) == 202
    answer = await here.delete("/admin/api/access-keys/nobody", headers=BEARER)
    assert answer.status == 404 and "error" in await answer.json()
    # Names are unique across config.yaml and the console.
    for name in ("backend", "a-few"):
        status, refused = await create(here, {"name": name, "pixels": "*"})
        assert status == 409 and "taken" in refused["error"]


@pytest.mark.parametrize(("body", "says"), [
    (b"{not json", "not JSON"),
    (b'["a list"]', "JSON object"),
    (b'{"name": "x", "pixels": "*", "sha256": "00"}', "unknown field 'sha256'"),
    (b'{"name": "has space", "pixels": "*"}', "name must be"),
    (b'{"name": "", "pixels": "*"}', "name must be"),
    (b'{"pixels": "*"}', "name must be"),
    (b'{"name": "x"}', "pixels must"),
    (b'{"name": "x", "pixels": []}', "pixels must"),
    (b'{"name": "x", "pixels": [123456]}', "pixels must"),
    (b'{"name": "x", "pixels": ["12ab"]}', "pixels must"),
    (b'{"name": "x", "pixels": "all"}', "pixels must"),
])
async def test_bad_input_is_refused_with_a_reason(
    two: tuple[Client, Client], body: bytes, says: str
) -> None:
    here, _ = two
    answer = await here.post("/admin/api/access-keys", data=body, headers=BEARER)
    assert answer.status == 400 and says in (await answer.json())["error"]
    assert names(here) == ["backend"]
    assert await here.app[appkeys.OUTBOX].console_records("access_key") == []


async def test_a_session_makes_and_revokes_keys_with_its_csrf_token_only(
    two: tuple[Client, Client]
) -> None:
    here, _ = two
    cookie = session_of(await sign_in(here))
    status, refused = await create(here, {"name": "k", "pixels": "*"}, cookie)
    assert status == 403 and "X-CSRF-Token" in refused["error"]
    csrf = {**cookie, "X-CSRF-Token": await csrf_of(here, cookie)}
    assert (await create(here, {"name": "k", "pixels": "*"}, csrf))[0] == 201
    assert (await here.delete("/admin/api/access-keys/k", headers=cookie)).status == 403
    assert (await here.delete("/admin/api/access-keys/k", headers=csrf)).status == 204
    assert (await here.get("/admin/api/access-keys")).status == 401


async def test_a_config_reload_keeps_the_console_keys(
    two: tuple[Client, Client], tmp_path: Path, fake_graph: FakeGraph
) -> None:
    here, _ = two
    _, made = await create(here, {"name": "kept", "pixels": "*"})
    new = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    apply_settings(here.app, new)  # config.yaml without its access key now
    assert names(here) == ["kept"]
    assert await send(here, made["key"]) == 202
    assert await send(here, CONFIG_KEY) == 401
