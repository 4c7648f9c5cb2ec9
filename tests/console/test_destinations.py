"""Destinations added in the console: live on another process sharing the store within about a
second, their tokens write-only and sealed under GATEWAY_SECRET_KEY (set, replaced, cleared,
checked against the fake Graph API on save), a test event, config.yaml's destinations
read-only, bad input refused with where, no key or another key handled without losing events."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway import appkeys
from gateway.accesskeys import key_sha256
from gateway.app import create_app
from gateway.config import load_settings
from gateway.console.destinations import KIND
from gateway.mintkeys import add_keys_parser, run_keys
from gateway.secretbox import KEY_ENV, SecretBox, Unreadable, new_key

from ..conftest import PIXEL_A, PIXEL_B, destination_yaml, outbox_rows, settings_yaml, wait_until
from ..fake_graph import FakeGraph
from .conftest import ADMIN_KEY, BEARER, console_settings
from .test_api import csrf_of, session_of, sign_in

TOKEN = "EAAConsoleToken0123456789"
Client = TestClient[Any, Any]


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = new_key()
    monkeypatch.setenv(KEY_ENV, key)
    return key


async def start(tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any,
                worker: int | None = None) -> Client:
    settings = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    return await aiohttp_client(  # type: ignore[no-any-return]
        TestServer(create_app(settings, worker=worker)))


def shop(fake_graph: FakeGraph, **fields: Any) -> dict[str, Any]:
    """A console destination `shop` for PIXEL_B at the fake Graph API."""
    return {"name": "shop", "type": "meta_capi", "pixel_id": PIXEL_B,
            "graph_url": fake_graph.url, "linger_ms": 0,  # type: ignore[attr-defined]
            "retry_base_seconds": 0.01, "retry_max_seconds": 0.05, **fields}


async def add(client: Client, entry: dict[str, Any], status: int = 201) -> dict[str, Any]:
    answer = await client.post("/admin/api/destinations", json=entry, headers=BEARER)
    body = await answer.json()
    assert answer.status == status, body
    assert isinstance(body, dict)
    return body


async def listed(client: Client) -> dict[str, dict[str, Any]]:
    answer = await client.get("/admin/api/destinations", headers=BEARER)
    assert answer.status == 200
    text = await answer.text()
    assert TOKEN not in text
    return {row["name"]: row for row in orjson.loads(text)}


async def status_of(client: Client, name: str) -> dict[str, Any]:
    """The destination's entry in /status."""
    answer = await client.get("/status", headers=BEARER)
    assert answer.status == 200
    [entry] = [d for d in (await answer.json())["destinations"] if d["name"] == name]
    return entry  # type: ignore[no-any-return]


async def put_token(client: Client, name: str, token: str, status: int = 204) -> None:
    answer = await client.put(f"/admin/api/destinations/{name}/token", json={"token": token},
                              headers=BEARER)
    assert answer.status == status, await answer.text()
    assert token not in await answer.text()


async def hit(client: Client, event_id: str) -> None:
    answer = await client.get("/tr", params={"id": PIXEL_B, "ev": "Lead", "eid": event_id,
                                             "dl": "https://shop.example.com/p"})
    assert answer.status == 200


def gateway_log(caplog: pytest.LogCaptureFixture) -> str:
    """Every line logged, but the fake Graph API's own access log (the token is in the query
    of the requests it receives, as Meta documents)."""
    return "\n".join(r.getMessage() for r in caplog.records
                     if not (r.name == "aiohttp.access" and " /v26.0/" in r.getMessage()))


# -- live on every process -------------------------------------------------------------------
async def test_a_destination_added_on_one_worker_relays_on_another_with_its_console_token(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway")
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    relaying = await start(tmp_path, fake_graph, aiohttp_client, worker=0)
    answering = await start(tmp_path, fake_graph, aiohttp_client, worker=1)
    added = await add(answering, shop(fake_graph, access_token=TOKEN))
    assert added == {"name": "shop", "type": "meta_capi", "source": "console", "token_set": True}
    # Live at once where it was added, and on the other process within about a second.
    assert "shop" in answering.server.app[appkeys.LIVE].current.by_name
    started = time.monotonic()
    await wait_until(lambda: "shop" in relaying.server.app[appkeys.LIVE].current.by_name, 2.0)
    assert time.monotonic() - started < 1.5

    await hit(relaying, "from-the-console")
    [request] = await fake_graph.wait_for_requests(1)
    assert request.pixel_id == PIXEL_B and request.query["access_token"] == TOKEN
    assert request.events[0]["event_id"] == "from-the-console"

    row = (await listed(answering))["shop"]
    assert row["source"] == "console" and row["token_set"] is True
    assert row["type"] == "meta_capi" and row["state"] == "active", row
    assert (await listed(answering))["main"]["source"] == "config"
    assert TOKEN not in gateway_log(caplog)


async def test_removing_a_console_destination_stops_it_everywhere_and_keeps_its_queue(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, shop(fake_graph, dry_run=False))  # no token: a dry run
    answer = await client.delete("/admin/api/destinations/shop", headers=BEARER)
    assert answer.status == 204
    assert "shop" not in client.server.app[appkeys.LIVE].current.by_name
    assert "shop" not in await listed(client)
    answer = await client.delete("/admin/api/destinations/shop", headers=BEARER)
    assert answer.status == 404


async def test_the_token_is_replaced_and_cleared_and_never_shown(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, shop(fake_graph))
    row = (await listed(client))["shop"]
    assert row["token_set"] is False and row["state"] == "dry_run"

    await put_token(client, "shop", TOKEN)
    await hit(client, "first")
    [first] = await fake_graph.wait_for_requests(1)
    assert first.query["access_token"] == TOKEN
    await put_token(client, "shop", "EAAReplacedToken")
    assert (await listed(client))["shop"]["token_set"] is True
    await hit(client, "second")
    requests = await fake_graph.wait_for_requests(2)
    assert requests[1].query["access_token"] == "EAAReplacedToken"
    # Both recorded as delivered: with one still in flight, clearing would hold it instead.
    settings = client.server.app[appkeys.SETTINGS]
    await wait_until(lambda: sorted(r["state"] for r in outbox_rows(settings))
                     == ["delivered", "delivered"])

    answer = await client.delete("/admin/api/destinations/shop/token", headers=BEARER)
    assert answer.status == 204
    row = (await listed(client))["shop"]
    assert row["token_set"] is False and row["state"] == "dry_run"
    await hit(client, "third")
    await wait_until(lambda: any(r["event_id"] == "third" and r["state"] == "dry_run"
                                 for r in outbox_rows(settings)))
    assert len(fake_graph.requests) == 2  # a dry run sends nothing


async def test_a_token_is_checked_against_meta_on_save_without_recording_an_event(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    fake_graph.valid_tokens = {TOKEN}
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, shop(fake_graph))
    assert (await listed(client))["shop"]["token_check"] is None

    await put_token(client, "shop", "EAAWrongToken")
    check = (await listed(client))["shop"]["token_check"]
    assert check["ok"] is False and "code 190" in check["message"]
    assert "EAAWrongToken" not in check["message"] and check["checked_at"]

    await put_token(client, "shop", TOKEN)
    check = (await listed(client))["shop"]["token_check"]
    assert check == {"ok": True, "message": f"the token reads pixel {PIXEL_B} (Fake pixel)",
                     "checked_at": check["checked_at"]}
    # A read of the pixel with the token, as the Graph API documents it; no event was sent.
    assert fake_graph.reads[-1] == (PIXEL_B, {"fields": "id,name", "access_token": TOKEN})
    assert fake_graph.requests == []

    # Given with the entry, the token is checked the same way.
    await add(client, shop(fake_graph, name="other", access_token=TOKEN))
    assert (await listed(client))["other"]["token_check"]["ok"] is True


async def test_a_test_event_goes_with_the_test_event_code_and_answers_metas_verdict(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, shop(fake_graph, access_token=TOKEN, test_event_code="TEST4242"))
    answer = await client.post("/admin/api/destinations/shop/test-event", headers=BEARER)
    assert answer.status == 200
    verdict = await answer.json()
    assert verdict == {"ok": True, "message": "events_received 1, fbtrace_id FakeTrace"}
    [request] = fake_graph.requests
    assert request.body["test_event_code"] == "TEST4242"
    assert request.query["access_token"] == TOKEN and request.pixel_id == PIXEL_B
    assert [e["event_name"] for e in request.events] == ["PageView"]

    fake_graph.fail_with(400, 190, "Error validating access token")
    answer = await client.post("/admin/api/destinations/shop/test-event", headers=BEARER)
    verdict = await answer.json()
    assert answer.status == 200 and verdict["ok"] is False and "code 190" in verdict["message"]

    # Without a test_event_code nothing is sent (it would count as a real event); nor without
    # a token. (Other types: test_destination_checks.py.)
    await add(client, shop(fake_graph, name="real", access_token=TOKEN))
    await add(client, shop(fake_graph, name="dry"))
    for name, says in (("real", "test_event_code"), ("dry", "runs dry")):
        answer = await client.post(f"/admin/api/destinations/{name}/test-event",
                                   headers=BEARER)
        assert answer.status == 409 and says in (await answer.json())["error"]
    assert len(fake_graph.requests) == 2
    answer = await client.post("/admin/api/destinations/nope/test-event", headers=BEARER)
    assert answer.status == 404


# -- refusals ---------------------------------------------------------------------------------
async def test_config_destinations_are_read_only_and_names_are_unique(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    client = await start(tmp_path, fake_graph, aiohttp_client)
    for answer in (
        await client.put("/admin/api/destinations/main/token", json={"token": TOKEN},
                         headers=BEARER),
        await client.delete("/admin/api/destinations/main/token", headers=BEARER),
        await client.delete("/admin/api/destinations/main", headers=BEARER),
    ):
        assert answer.status == 409 and "config.yaml" in (await answer.json())["error"]
    body = await add(client, shop(fake_graph, name="main"), status=409)
    assert "config.yaml" in body["error"]
    await add(client, shop(fake_graph))
    body = await add(client, shop(fake_graph, access_token=TOKEN), status=409)
    assert "already" in body["error"]
    answer = await client.put("/admin/api/destinations/missing/token", json={"token": TOKEN},
                              headers=BEARER)
    assert answer.status == 404
    # Writes need the admin key (or a session and its CSRF token).
    answer = await client.post("/admin/api/destinations", json=shop(fake_graph, name="x"))
    assert answer.status == 401


async def test_bad_input_is_refused_with_where_by_config_yamls_own_checks(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    client = await start(tmp_path, fake_graph, aiohttp_client)
    for raw in (b"{not json", b"[1, 2]"):
        answer = await client.post("/admin/api/destinations", data=raw, headers=BEARER)
        assert answer.status == 400 and "JSON object" in (await answer.json())["error"]
    body = await add(client, shop(fake_graph, pixel_id="12ab", batch_sise=5,
                                  access_token="not a token!"), status=400)
    where = {p["where"]: p["message"] for p in body["problems"]}
    assert set(where) == {"pixel_id", "batch_sise", "access_token"}
    assert "did you mean 'batch_size'" in where["batch_sise"]
    assert "not a token" not in body["error"] + where["access_token"]  # a secret is not echoed
    body = await add(client, {"name": "Bad Name", "type": "carrier_pigeon"}, status=400)
    assert {p["where"] for p in body["problems"]} == {"name", "type"}
    body = await add(client, shop(fake_graph, timeout=60), status=400)
    assert body["problems"][0]["where"] == "timeout" and "lease_seconds" in body["error"]
    for token_body in ({"token": ""}, {"token": 5}, {"tokens": "x"}):
        await add(client, shop(fake_graph, name=f"t{len(str(token_body))}"))
        answer = await client.put(f"/admin/api/destinations/t{len(str(token_body))}/token",
                                  json=token_body, headers=BEARER)
        assert answer.status == 400
    assert "shop" not in await listed(client)


async def test_values_typed_in_the_console_never_read_the_gateways_environment(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, shop(fake_graph, graph_url=f"https://graph.example.com/${{{KEY_ENV}}}"))
    live = client.server.app[appkeys.LIVE].current.by_name["shop"]
    url = live.settings.options.graph_url  # type: ignore[attr-defined]
    assert url.endswith(f"/${{{KEY_ENV}}}") and secret_key not in url


async def test_without_a_secret_key_no_token_is_stored_and_the_answer_says_how_to_make_one(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    client = await start(tmp_path, fake_graph, aiohttp_client)
    body = await add(client, shop(fake_graph, access_token=TOKEN), status=409)
    assert "tag-gateway keys secret" in body["error"] and KEY_ENV in body["error"]
    assert "shop" not in await listed(client)
    await add(client, shop(fake_graph))  # without a token it may be added: a dry run
    answer = await client.put("/admin/api/destinations/shop/token", json={"token": TOKEN},
                              headers=BEARER)
    assert answer.status == 409 and "tag-gateway keys secret" in (await answer.json())["error"]
    assert (await listed(client))["shop"]["token_set"] is False


async def test_a_token_sealed_with_another_key_holds_the_destination_and_loses_nothing(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, new_key())
    first = await start(tmp_path, fake_graph, aiohttp_client)
    await add(first, shop(fake_graph, access_token=TOKEN))
    await first.close()

    monkeypatch.setenv(KEY_ENV, new_key())  # the key was changed (or lost)
    client = await start(tmp_path, fake_graph, aiohttp_client)
    row = (await listed(client))["shop"]
    assert row["token_set"] is True and row["state"] == "token_unreadable"
    assert (await status_of(client, "shop"))["token_set"] is True  # /status agrees
    assert "cannot be read" in row["token_problem"] and row["dry_run"] is False
    await hit(client, "kept")
    settings = client.server.app[appkeys.SETTINGS]
    await wait_until(lambda: any(r["event_id"] == "kept" for r in outbox_rows(settings)))
    worker = client.server.app[appkeys.RELAYS].get("shop")
    assert worker is not None and worker.state == "paused"
    [kept] = [r for r in outbox_rows(settings) if r["event_id"] == "kept"]
    assert kept["state"] == "pending" and fake_graph.requests == []
    status = await (await client.get("/status", headers=BEARER)).json()
    [shown] = [d for d in status["destinations"] if d["name"] == "shop"]
    assert (shown["state"], shown["token_set"], shown["dry_run"]) == ("paused", True, False)
    assert "cannot be read" in shown["paused_reason"]
    answer = await client.post("/admin/api/destinations/shop/test-event", headers=BEARER)
    assert answer.status == 409 and "cannot be read" in (await answer.json())["error"]

    # Set again under the new key: the held events go out.
    await put_token(client, "shop", TOKEN)
    [request] = await fake_graph.wait_for_requests(1)
    assert request.events[0]["event_id"] == "kept"
    assert (await listed(client))["shop"]["state"] != "token_unreadable"


async def test_the_store_holds_the_token_only_sealed_and_bound_to_its_record(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, shop(fake_graph, access_token=TOKEN))
    record = await client.server.app[appkeys.OUTBOX].console_record(KIND, "shop")
    assert record is not None and record.secret is not None
    assert TOKEN not in record.body and TOKEN.encode() not in record.secret
    assert record.secret.startswith(b"v1")
    await client.close()
    for path in tmp_path.glob("gateway.db*"):  # the database and its WAL, as bytes
        assert TOKEN.encode() not in path.read_bytes()
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        dump = "\n".join(db.iterdump())
    assert TOKEN not in dump

    box = SecretBox.from_env({KEY_ENV: secret_key})
    assert box.open(record.secret, KIND, "shop") == TOKEN
    with pytest.raises(Unreadable):  # moved onto another record, it does not open
        box.open(record.secret, KIND, "other")
    with pytest.raises(Unreadable):
        SecretBox.from_env({KEY_ENV: new_key()}).open(record.secret, KIND, "shop")


def test_keys_secret_prints_a_key_the_gateway_takes(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_keys_parser(parser.add_subparsers(dest="command"))
    assert run_keys(parser.parse_args(["keys", "secret"])) == 0
    out = capsys.readouterr().out
    [line] = [line.strip() for line in out.splitlines() if line.strip().startswith(KEY_ENV)]
    box = SecretBox.from_env({KEY_ENV: line.split("=", 1)[1]})
    assert box.can_seal and box.open(box.seal("x", KIND, "a"), KIND, "a") == "x"


async def test_rules_may_name_console_destinations_and_a_config_reload_keeps_them(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    folder, config = tmp_path / "rules", tmp_path / "config.yaml"
    folder.mkdir()
    admin = f"admin: {{key_sha256: {key_sha256(ADMIN_KEY)}, listen: ''}}\n"
    main = destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A)
    config.write_text(settings_yaml(tmp_path, main, extra=admin + "rules: {path: rules}\n"))
    first = await aiohttp_client(create_app(load_settings(config, env={})))
    await add(first, shop(fake_graph, access_token=TOKEN))
    (folder / "10-route.yaml").write_text(
        "version: 1\nrules:\n  - name: leads to shop\n    when: {event_name: Lead}\n"
        "    send_to_destination_only: [shop]\n")
    assert await first.app[appkeys.RULES].reload()
    await first.close()

    # After a restart the console's destinations are there before the rules load.
    client = await aiohttp_client(create_app(load_settings(config, env={})))
    rules = client.app[appkeys.RULES]
    assert rules.last_error is None and len(rules.current.rules) == 1
    await hit(client, "lead-1")
    [request] = await fake_graph.wait_for_requests(1)
    assert request.pixel_id == PIXEL_B and request.query["access_token"] == TOKEN

    # A config reload keeps the console's destinations; a console change keeps config's.
    extra = destination_yaml("extra", fake_graph.url, pixel_id=PIXEL_A)
    config.write_text(settings_yaml(tmp_path, main, extra,
                                    extra=admin + "rules: {path: rules}\n"))
    assert await client.app[appkeys.RELOADER].reload()
    assert set(client.app[appkeys.LIVE].current.by_name) == {"main", "extra", "shop"}
    await add(client, shop(fake_graph, name="more"))
    assert set(client.app[appkeys.LIVE].current.by_name) == {"main", "extra", "shop", "more"}
    # Removing it: the rules that name it are refused (the last good set keeps serving).
    answer = await client.delete("/admin/api/destinations/shop", headers=BEARER)
    assert answer.status == 204
    await wait_until(lambda: rules.last_error is not None)
    assert "no destination named 'shop'" in (rules.last_error or "")


async def test_a_name_config_yaml_takes_later_is_config_yamls_and_the_console_entry_can_go(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    config = tmp_path / "config.yaml"
    admin = f"admin: {{key_sha256: {key_sha256(ADMIN_KEY)}, listen: ''}}\n"
    main = destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A)
    config.write_text(settings_yaml(tmp_path, main, extra=admin))
    client = await aiohttp_client(create_app(load_settings(config, env={})))
    await add(client, shop(fake_graph, access_token=TOKEN))
    # config.yaml's, without a token: a dry run (the console's token stays the console's).
    taken = destination_yaml("shop", fake_graph.url, pixel_id=PIXEL_A, access_token="")
    config.write_text(settings_yaml(tmp_path, main, taken, extra=admin))
    assert await client.app[appkeys.RELOADER].reload()
    live = client.app[appkeys.LIVE].current.by_name["shop"]
    assert live.settings.accepts == frozenset({PIXEL_A}) and live.settings.is_dry_run
    rows = await (await client.get("/admin/api/destinations", headers=BEARER)).json()
    assert sorted((r["name"], r["source"], r["state"]) for r in rows if r["name"] == "shop") == [
        ("shop", "config", "dry_run"), ("shop", "console", "not_used")]
    assert (await client.delete("/admin/api/destinations/shop", headers=BEARER)).status == 204
    assert (await client.delete("/admin/api/destinations/shop", headers=BEARER)).status == 409
    assert "shop" in client.app[appkeys.LIVE].current.by_name


async def test_a_signed_in_browser_needs_the_csrf_token_for_every_destination_change(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, shop(fake_graph))
    cookie = session_of(await sign_in(client))
    csrf = await csrf_of(client, cookie)
    changes = (("POST", "/admin/api/destinations", shop(fake_graph, name="other")),
               ("PUT", "/admin/api/destinations/shop/token", {"token": TOKEN}),
               ("DELETE", "/admin/api/destinations/shop/token", None),
               ("POST", "/admin/api/destinations/shop/test-event", None),
               ("DELETE", "/admin/api/destinations/shop", None))
    for method, path, body in changes:
        answer = await client.request(method, path, json=body, headers=cookie)
        assert answer.status == 403, (method, path)
    assert (await listed(client))["shop"]["token_set"] is False
    assert "other" not in await listed(client)
    answer = await client.put("/admin/api/destinations/shop/token", json={"token": TOKEN},
                              headers={**cookie, "X-CSRF-Token": csrf})
    assert answer.status == 204
    assert (await listed(client))["shop"]["token_set"] is True


async def test_a_webhook_whose_url_and_headers_may_carry_credentials_is_refused_unstored(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    client = await start(tmp_path, fake_graph, aiohttp_client)
    secrets = ("SlackSecretPath", "QuerySecret1", "HeaderSecret999", "SigningSecret7")
    body = await add(client, {
        "name": "hook", "type": "webhook",
        "url": "https://hooks.example/services/T0/B0/SlackSecretPath?token=QuerySecret1",
        "secret": "SigningSecret7", "headers": {"Authorization": "Bearer HeaderSecret999"}},
        status=400)
    assert "url and headers" in body["error"] and "config.yaml" in body["error"]
    assert not any(secret in str(body) for secret in secrets)
    assert "hook" not in await listed(client)
    answer = await client.get("/admin/api/destination-types", headers=BEARER)
    assert "webhook" not in {t["type"] for t in await answer.json()}  # not offered either
    await client.close()
    for path in tmp_path.glob("gateway.db*"):  # the database and its WAL, as bytes
        stored = path.read_bytes()
        assert not any(secret.encode() in stored for secret in secrets), path


async def test_a_cleared_token_holds_the_queued_events_until_a_token_is_set_again(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    fake_graph.fail_with(500, 2, "Service temporarily unavailable", times=100_000)
    client = await start(tmp_path, fake_graph, aiohttp_client)
    app = client.server.app
    settings = app[appkeys.SETTINGS]
    await add(client, shop(fake_graph, access_token=TOKEN))
    for event_id in ("one", "two", "three"):
        await hit(client, event_id)
    await fake_graph.wait_for_requests(2)  # answered 2xx, and now retried

    def held() -> bool:
        worker = app[appkeys.RELAYS].get("shop")
        return worker is not None and worker.state == "paused"

    async def queued_and_held() -> None:
        await wait_until(held)

        def rows() -> list[dict[str, Any]]:
            return [r for r in outbox_rows(settings) if r["destination"] == "shop"]

        # A send under way when the token went is given back once it ends.
        await wait_until(lambda: {r["state"] for r in rows()} == {"pending"})
        assert sorted(r["event_id"] for r in rows()) == ["one", "three", "two"]
        row = (await listed(client))["shop"]
        assert row["state"] == "token_needed" and row["token_set"] is False
        assert "until one is set" in row["token_problem"] and row["dry_run"] is False
        assert (await status_of(client, "shop"))["token_set"] is False  # /status agrees

    answer = await client.delete("/admin/api/destinations/shop/token", headers=BEARER)
    assert answer.status == 204
    await queued_and_held()
    # Removed and added again without a token while its events wait: it holds them too.
    answer = await client.delete("/admin/api/destinations/shop", headers=BEARER)
    assert answer.status == 204
    await add(client, shop(fake_graph))
    await queued_and_held()

    fake_graph.recover()
    await put_token(client, "shop", TOKEN)
    delivered = await fake_graph.wait_for_events(3)
    assert sorted(e["event_id"] for e in delivered) == ["one", "three", "two"]
    assert (await listed(client))["shop"]["state"] != "token_needed"


async def test_a_slow_check_of_a_replaced_token_leaves_the_newer_tokens_verdict(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
) -> None:
    fake_graph.valid_tokens = {TOKEN}
    slow = fake_graph.read_gates["EAAWrongToken"] = asyncio.Event()
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, shop(fake_graph))
    first = asyncio.create_task(put_token(client, "shop", "EAAWrongToken"))
    await wait_until(lambda: any(q.get("access_token") == "EAAWrongToken"
                                 for _, q in fake_graph.reads))
    await put_token(client, "shop", TOKEN)  # saved and checked while the first check waits
    assert (await listed(client))["shop"]["token_check"]["ok"] is True
    slow.set()
    await first
    check = (await listed(client))["shop"]["token_check"]
    assert check is not None and check["ok"] is True  # not lost, nor the slow one's
    assert set(check) == {"ok", "message", "checked_at"}
    record = await client.server.app[appkeys.OUTBOX].console_record(KIND, "shop")
    assert record is not None
    assert orjson.loads(record.body)["token_check"]["ok"] is True  # the slow verdict: dropped


async def test_a_webhook_added_in_the_console_before_is_used_and_named_in_a_warning(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, secret_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await start(tmp_path, fake_graph, aiohttp_client)
    app = client.server.app
    entry = {"name": "hook", "type": "webhook", "url": "https://receiver.example.com/in"}
    body = orjson.dumps({"destination": entry, "token_check": None}).decode()
    assert await app[appkeys.OUTBOX].add_console_record(KIND, "hook", body, None)
    with caplog.at_level(logging.WARNING, logger="gateway.console.destinations"):
        await app[appkeys.RECORDS].refresh()
    assert "hook" in app[appkeys.LIVE].current.by_name  # nothing it had stops
    assert "console destination hook: a webhook is no longer taken" in gateway_log(caplog)
    assert "move it to config.yaml" in gateway_log(caplog)
