"""Delivery guarantees end to end, against scripted local fakes of the Graph API: bad events
isolated and dead-lettered, token refusals paused and alerted then resumed by a config reload,
slow destinations isolated, expiry, dedup, backpressure, and the operator endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway import appkeys
from gateway.__main__ import main
from gateway.admin import serve_operators_on
from gateway.app import create_app
from gateway.config import load_settings, parse_settings
from gateway.settings import Settings
from gateway.storage import OutboxEntry, open_outbox

from ..conftest import (
    PIXEL_A,
    PIXEL_B,
    FakeClock,
    GatewayFactory,
    destination_yaml,
    graph_server,
    operator_listener,
    settings_yaml,
    wait_until,
)
from ..conftest import (
    outbox_rows as rows,
)
from ..fake_graph import FakeGraph


async def hit(client: Any, pixel: str, **params: str) -> Any:
    params.setdefault("dl", "https://shop.example.com/")
    return await client.get("/tr", params={"id": pixel, "ev": "PageView", **params})


async def test_one_invalid_event_in_a_batch_of_1000(
    tmp_path: Path, aiohttp_server: Any, start_gateway: GatewayFactory
) -> None:
    delivered: list[str] = []
    requests: list[int] = []

    async def graph(request: web.Request) -> web.Response:
        events = orjson.loads(await request.read())["data"]
        requests.append(len(events))
        if any(e["event_id"] == "e517" for e in events):
            return web.json_response({"error": {
                "message": "Invalid parameter", "type": "OAuthException", "code": 100,
                "error_subcode": 2804019, "error_user_title": "Invalid custom data",
                "error_user_msg": "The value of custom_data.value is not a number",
                "fbtrace_id": "Ftrace517"}}, status=400)
        delivered.extend(e["event_id"] for e in events)
        return web.json_response({"events_received": len(events), "fbtrace_id": "ok"})

    url = await graph_server(aiohttp_server, graph)
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", url, pixel_id=PIXEL_A, batch_size=1000, max_in_flight=1)), env={})
    outbox = await open_outbox(settings.storage, clock=time.time)
    now = time.time()
    await outbox.enqueue([
        OutboxEntry("main", PIXEL_A, "", "Purchase", f"e{n}", int(now),
                    orjson.dumps({"event_name": "Purchase", "event_id": f"e{n}"}),
                    expires_at=now + 3600)
        for n in range(1000)
    ])
    await outbox.close()

    await start_gateway(settings)
    await wait_until(lambda: len(delivered) == 999, timeout=20)
    await wait_until(lambda: sorted({r["state"] for r in rows(settings)}) == ["dead",
                                                                               "delivered"])
    assert requests[0] == 1000  # one request first, then halves around the bad event
    assert len(requests) <= 2 * 10 + 1  # bisection: about 2 requests per level
    [dead] = [r for r in rows(settings) if r["state"] != "delivered"]
    assert (dead["event_id"], dead["reason"], dead["fbtrace_id"]) == ("e517", "invalid",
                                                                      "Ftrace517")
    assert "custom_data.value is not a number" in dead["last_error"]
    assert sorted(delivered) == sorted(f"e{n}" for n in range(1000) if n != 517)


def two_destinations(tmp_path: Path, url: str, token_a: str, webhook: str) -> str:
    return settings_yaml(
        tmp_path,
        destination_yaml("shop-a", url, pixel_id=PIXEL_A, access_token=token_a),
        destination_yaml("shop-b", url, pixel_id=PIXEL_B, access_token="TOKEN-B"),
        extra=f"alerts: {{webhook_url: {webhook}}}\n",
    )


async def test_a_refused_token_pauses_one_destination_alerts_and_resumes_on_a_new_token(
    tmp_path: Path, aiohttp_server: Any, aiohttp_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivered: dict[str, list[str]] = {"TOKEN-A-NEW": [], "TOKEN-B": []}
    alerts: list[dict[str, Any]] = []

    async def graph(request: web.Request) -> web.Response:
        token = request.query["access_token"]
        if token == "TOKEN-A-OLD":
            return web.json_response({"error": {
                "message": "Error validating access token: Session has expired",
                "type": "OAuthException", "code": 190, "error_subcode": 463,
                "fbtrace_id": "Tok"}}, status=401)
        events = orjson.loads(await request.read())["data"]
        delivered[token].extend(e["event_id"] for e in events)
        return web.json_response({"events_received": len(events)})

    async def webhook(request: web.Request) -> web.Response:
        alerts.append(await request.json())
        return web.Response(status=204)

    url = await graph_server(aiohttp_server, graph)
    hook_app = web.Application()
    hook_app.router.add_post("/hook", webhook)
    hook = await aiohttp_server(hook_app)
    config = tmp_path / "config.yaml"
    config.write_text(two_destinations(tmp_path, url, "TOKEN-A-OLD", str(hook.make_url("/hook"))))
    client = operator_listener(await aiohttp_client(create_app(load_settings(config, env={}))))

    for n in range(3):
        assert (await hit(client, PIXEL_A, eid=f"a{n}")).status == 200
        assert (await hit(client, PIXEL_B, eid=f"b{n}")).status == 200
    await wait_until(lambda: len(delivered["TOKEN-B"]) == 3)  # B is not held back by A
    await wait_until(lambda: len(alerts) == 1)
    assert alerts[0]["alert"] == "token_invalid" and alerts[0]["destination"] == "shop-a"
    assert "TOKEN-A" not in orjson.dumps(alerts).decode()
    status = await (await client.get("/status")).json()
    a = next(d for d in status["destinations"] if d["name"] == "shop-a")
    assert a["state"] == "paused" and a["token_invalid"] is True
    await wait_until(lambda: sum(r["state"] == "pending" for r in rows(
        client.app[appkeys.SETTINGS])) == 3)
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_destination_token_invalid{destination="shop-a"} 1.0' in metrics
    assert 'gateway_destination_state{destination="shop-a",state="paused"} 1.0' in metrics

    # A person pastes a new token; the file change is picked up (here: reloaded at once).
    config.write_text(two_destinations(tmp_path, url, "TOKEN-A-NEW", str(hook.make_url("/hook"))))
    assert await client.app[appkeys.RELOADER].reload()
    await wait_until(lambda: sorted(delivered["TOKEN-A-NEW"]) == ["a0", "a1", "a2"])
    status = await (await client.get("/status")).json()
    a = next(d for d in status["destinations"] if d["name"] == "shop-a")
    assert a["state"] == "active" and a["token_invalid"] is False
    assert "TOKEN-A-OLD" not in caplog.text and "TOKEN-A-NEW" not in caplog.text


async def test_an_invalid_config_reload_keeps_the_last_good_one(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    config = tmp_path / "config.yaml"
    good = settings_yaml(tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A),
                         extra="admin: {listen: ''}\n")  # the destination's block is last
    config.write_text(good)
    client = operator_listener(await aiohttp_client(create_app(load_settings(config, env={}))))
    config.write_text(good + "    batch_size: 5000\n")  # over Meta's 1000
    assert not await client.app[appkeys.RELOADER].reload()
    status = await (await client.get("/status")).json()
    assert "batch_size: must be a whole number between 1 and 1000" in status["config"][
        "last_error"]
    assert (await hit(client, PIXEL_A, eid="still-works")).status == 200
    [event] = await fake_graph.wait_for_events(1)
    assert event["event_id"] == "still-works"


async def test_a_slow_destination_never_delays_another(
    tmp_path: Path, aiohttp_server: Any, start_gateway: GatewayFactory
) -> None:
    fast: list[float] = []
    release = asyncio.Event()

    async def graph(request: web.Request) -> web.Response:
        if request.query["access_token"] == "TEST-TOKEN-slow":
            await release.wait()  # hangs until the test ends
        else:
            fast.append(time.monotonic())
        return web.json_response({"events_received": 1})

    url = await graph_server(aiohttp_server, graph)
    settings = parse_settings(settings_yaml(
        tmp_path,
        destination_yaml("slow", url, pixel_id=PIXEL_A, accepts="*", timeout=10,
                         max_in_flight=1),
        destination_yaml("fast", url, pixel_id=PIXEL_B, accepts="*"),
    ).replace("commit_interval_ms: 1}", "commit_interval_ms: 1, lease_seconds: 30}"), env={})
    client = await start_gateway(settings)
    started = time.monotonic()
    for n in range(5):
        assert (await hit(client, PIXEL_A, eid=f"x{n}")).status == 200
    await wait_until(lambda: len(fast) >= 1, timeout=5)
    await wait_until(lambda: sum(r["state"] == "delivered" for r in rows(settings)) == 5)
    assert fast[0] - started < 2.0
    release.set()


async def test_events_past_metas_window_become_dead_letters(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    clock = FakeClock(time.time())
    fake_graph.fail_with(503, 1, "down", times=10**6)
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A, retry_base_seconds=600,
        retry_max_seconds=600)), env={})
    client = operator_listener(await aiohttp_client(create_app(settings, clock=clock)))
    assert (await hit(client, PIXEL_A, eid="old")).status == 200
    await wait_until(lambda: rows(settings)[0]["last_error"] is not None)  # retry scheduled
    clock.now += 8 * 86400  # a week and a day later
    client.app[appkeys.OUTBOX].wakeup("main").set()
    await wait_until(lambda: rows(settings)[0]["state"] == "dead")
    assert rows(settings)[0]["reason"] == "expired"
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_dead_letters_total{destination="main",reason="expired"} 1.0' in metrics


async def test_repeats_are_sent_once(
    one_destination: Settings, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    client = await start_gateway(one_destination)
    for _ in range(3):  # the browser retried, a tab was restored
        assert (await hit(client, PIXEL_A, eid="same")).status == 200
    await wait_until(lambda: sorted(r["state"] for r in rows(one_destination)) ==
                     ["delivered", "duplicate", "duplicate"])
    assert [e["event_id"] for e in fake_graph.events] == ["same"]
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_duplicates_suppressed_total{destination="main"} 2.0' in metrics


async def test_backpressure_answers_503_with_retry_after(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    fake_graph.fail_with(503, 1, "down", times=10**6)
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A, retry_base_seconds=600,
        retry_max_seconds=600)).replace(
            "commit_interval_ms: 1}", "commit_interval_ms: 1, max_queue_rows: 2}"), env={})
    client = await start_gateway(settings)
    for n in range(2):
        assert (await hit(client, PIXEL_A, eid=f"q{n}")).status == 200
    await client.app[appkeys.BACKPRESSURE].check()  # the background check, run now
    refused = await hit(client, PIXEL_A, eid="q2")
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "30"
    assert "limit of 2 queued events" in (await refused.json())["error"]
    assert len(rows(settings)) == 2
    status = await (await client.get("/status")).json()
    assert status["backpressure"] == "the outbox holds its limit of 2 queued events or more"
    assert status["queued_for_unconfigured_destinations"] == {}


async def test_dead_letters_endpoint_and_cli_list_and_replay(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A)))
    settings = load_settings(config, env={})
    fake_graph.fail_with(400, 100, "Invalid parameter", error_user_msg="Bad value")
    client = await start_gateway(settings)
    assert (await hit(client, PIXEL_A, eid="bad")).status == 200
    await wait_until(lambda: rows(settings)[0]["state"] == "dead")

    listed = await (await client.get("/dead-letters", params={"reason": "invalid"})).json()
    [letter] = listed["dead_letters"]
    assert (letter["event_id"], letter["reason"], letter["fbtrace_id"]) == ("bad", "invalid",
                                                                            "AbCdEf")
    # The CLI runs its own event loop, as it does in a process of its own.
    assert await asyncio.to_thread(main, ["dead-letters", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "main invalid pixel=" in out and "Bad value" in out
    assert (await client.get("/dead-letters", params={"reason": "nope"})).status == 400

    assert await asyncio.to_thread(
        main, ["dead-letters", "replay", "--config", str(config), "--reason", "invalid"]) == 0
    assert "re-queued 1 dead letter" in capsys.readouterr().out
    client.app[appkeys.OUTBOX].wakeup("main").set()
    [event] = await fake_graph.wait_for_events(1)  # the Graph accepts it the second time
    assert event["event_id"] == "bad"
    replayed = await (await client.post("/dead-letters/replay")).json()
    assert replayed == {"replayed": 0}
    for limit in ("0", "-99999999999999999999", "abc", "1001"):
        bad = await client.get("/dead-letters", params={"limit": limit})
        assert bad.status == 400 and "from 1 to 1000" in (await bad.json())["error"]


async def test_replay_over_http_takes_ids_and_refuses_unknown_filters(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A)), env={})
    client = await start_gateway(settings)
    for n, eid in enumerate(("one", "two")):
        fake_graph.fail_with(400, 100, "Invalid parameter", error_user_msg="Bad value")
        assert (await hit(client, PIXEL_A, eid=eid)).status == 200
        await wait_until(lambda n=n: rows(settings)[n]["state"] == "dead")
    first = rows(settings)[0]["id"]
    misspelt = await client.post("/dead-letters/replay", params={"ids": str(first)})
    assert misspelt.status == 400 and "'ids'" in (await misspelt.json())["error"]
    assert (await client.post("/dead-letters/replay", params={"id": "x"})).status == 400
    too_big = {"id": "9" * 20}  # beyond SQLite's integers: a 400, not a 500
    assert (await client.post("/dead-letters/replay", params=too_big)).status == 400
    assert (await client.get("/dead-letters", params=too_big)).status == 400
    assert [r["state"] for r in rows(settings)] == ["dead", "dead"]  # nothing replayed
    replayed = await client.post("/dead-letters/replay", params={"id": str(first)})
    assert await replayed.json() == {"replayed": 1}
    [event] = await fake_graph.wait_for_events(1)
    assert event["event_id"] == "one"
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered", "dead"])


async def test_with_an_admin_key_operator_endpoints_need_it_even_locally(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    key = "s3cret-admin-key"
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A),
        extra=f"admin: {{key_sha256: {hashlib.sha256(key.encode()).hexdigest()}}}\n"), env={})
    client = await start_gateway(settings)
    for path in ("/status", "/metrics", "/dead-letters"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status == 401
        ok = await client.get(path, headers={"Authorization": f"Bearer {key}"})
        assert ok.status == 200
    assert (await client.get("/healthz")).status == 200
    # A key that is not UTF-8 is a wrong key (401), not a server error.
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
                 b"Connection: close\r\n\r\n")
    status_line = await reader.readline()
    writer.close()
    assert b" 401 " in status_line, status_line


OPERATOR_REQUESTS = (("GET", "/status"), ("GET", "/metrics"), ("GET", "/dead-letters"),
                     ("POST", "/dead-letters/replay"))


async def admin_site(client: Any) -> str:
    """A second listener on the test server's runner, marked as the admin listener (as
    `serve` does with admin.listen); its base URL."""
    site = web.TCPSite(client.server.runner, "127.0.0.1", 0)
    await site.start()
    address = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
    serve_operators_on(client.server.app, address)
    return f"http://127.0.0.1:{address[1]}"


async def test_without_an_admin_key_operator_endpoints_answer_only_on_the_admin_listener(
    one_destination: Settings, aiohttp_client: Any
) -> None:
    """On the public listener even a plain loopback request is refused: a TCP relay, nginx's
    default proxy_pass or a sidecar looks exactly like one."""
    client = await aiohttp_client(create_app(one_destination))
    admin = await admin_site(client)
    for method, path in OPERATOR_REQUESTS:
        public = await client.request(method, path)
        assert public.status == 403, path
        assert "admin listener" in (await public.json())["error"]
        async with client.session.request(method, admin + path) as private:
            assert private.status == 200, path
    for probe in ("/healthz", "/readyz"):
        assert (await client.get(probe)).status == 200


async def test_with_an_admin_key_every_listener_wants_it(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    key = "admin-key-for-tests-0123456789"
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A),
        extra=f"admin: {{key_sha256: {hashlib.sha256(key.encode()).hexdigest()}}}\n",
    ), env={})
    client = await aiohttp_client(create_app(settings))
    admin = await admin_site(client)
    for base in ("", admin):
        for method, path in OPERATOR_REQUESTS:
            async with client.session.request(method, (base or str(client.make_url(""))) + path
                                              ) as anonymous:
                assert anonymous.status == 401, (base, path)
            async with client.session.request(
                    method, (base or str(client.make_url(""))) + path,
                    headers={"Authorization": f"Bearer {key}"}) as keyed:
                assert keyed.status == 200, (base, path)


async def test_a_wrong_graph_address_is_waited_out_not_dead_lettered(
    tmp_path: Path, aiohttp_server: Any, start_gateway: GatewayFactory
) -> None:
    app = web.Application()  # no events route at all: every POST gets aiohttp's plain 404
    server = await aiohttp_server(app)
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", str(server.make_url("")).rstrip("/"), pixel_id=PIXEL_A)), env={})
    client = await start_gateway(settings)
    for n in range(3):
        assert (await hit(client, PIXEL_A, eid=f"w{n}")).status == 200
    await wait_until(lambda: all(r["last_error"] for r in rows(settings)))
    assert {r["state"] for r in rows(settings)} == {"pending"}
    assert "check graph_url and api_version" in rows(settings)[0]["last_error"]


async def test_an_old_tokens_late_refusal_does_not_pause_the_new_token(
    tmp_path: Path, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    old_answer = asyncio.Event()
    old_seen = asyncio.Event()
    delivered: list[str] = []

    async def graph(request: web.Request) -> web.Response:
        events = orjson.loads(await request.read())["data"]
        if request.query["access_token"] == "TOKEN-OLD":
            old_seen.set()
            await old_answer.wait()  # answers only after the token was replaced
            return web.json_response({"error": {"message": "Session has expired",
                                                "code": 190}}, status=401)
        delivered.extend(e["event_id"] for e in events)
        return web.json_response({"events_received": len(events)})

    url = await graph_server(aiohttp_server, graph)
    config = tmp_path / "config.yaml"
    text = settings_yaml(tmp_path, destination_yaml("main", url, pixel_id=PIXEL_A,
                                                     access_token="TOKEN-OLD", timeout=10))
    config.write_text(text)
    client = await aiohttp_client(create_app(load_settings(config, env={})))
    assert (await hit(client, PIXEL_A, eid="t1")).status == 200
    await asyncio.wait_for(old_seen.wait(), 5)
    config.write_text(text.replace("TOKEN-OLD", "TOKEN-NEW"))
    assert await client.app[appkeys.RELOADER].reload()
    old_answer.set()  # the request sent with the old token now fails with 190
    await wait_until(lambda: delivered == ["t1"])  # retried with the new token
    [worker] = client.app[appkeys.RELAYS]
    assert worker.state == "active" and worker.paused_reason is None


async def test_a_destination_added_by_a_reload_starts_its_worker(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    config = tmp_path / "config.yaml"
    one = settings_yaml(tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A))
    config.write_text(one)
    client = await aiohttp_client(create_app(load_settings(config, env={})))
    assert (await hit(client, PIXEL_B, eid="b0")).status == 200  # nobody takes PIXEL_B yet
    two = settings_yaml(tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A),
                        destination_yaml("extra", fake_graph.url, pixel_id=PIXEL_B))
    config.write_text(two)
    assert await client.app[appkeys.RELOADER].reload()
    assert sorted(w.name for w in client.app[appkeys.RELAYS]) == ["extra", "main"]
    assert (await hit(client, PIXEL_B, eid="b1")).status == 200
    [request] = await fake_graph.wait_for_requests(1)
    assert request.query == {"access_token": "TEST-TOKEN-extra"}
    await wait_until(lambda: [(row["destination"], row["state"]) for row in rows(
        client.app[appkeys.SETTINGS])] == [("", "unrouted"), ("extra", "delivered")])


async def test_a_changed_max_in_flight_restarts_only_that_worker(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    config = tmp_path / "config.yaml"
    main = destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A)
    other = destination_yaml("other", fake_graph.url, pixel_id=PIXEL_B)
    config.write_text(settings_yaml(tmp_path, main, other))
    client = await aiohttp_client(create_app(load_settings(config, env={})))
    before = {w.name: w for w in client.app[appkeys.RELAYS]}
    config.write_text(settings_yaml(tmp_path, main + "\n    max_in_flight: 1", other))
    assert await client.app[appkeys.RELOADER].reload()
    after = {w.name: w for w in client.app[appkeys.RELAYS]}
    assert after["main"] is not before["main"] and after["main"].max_in_flight == 1
    assert after["other"] is before["other"]
    await wait_until(lambda: not before["main"].running)
    assert (await hit(client, PIXEL_A, eid="a1")).status == 200
    [request] = await fake_graph.wait_for_requests(1)
    assert request.query == {"access_token": "TEST-TOKEN-main"}


async def test_a_reload_in_a_worker_that_does_not_relay_keeps_routing(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    # `serve --workers N`: workers 1..N-1 take hits but have no relay workers of their own.
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A)))
    client = await aiohttp_client(create_app(
        load_settings(config, env={}), worker=1))
    config.write_text(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A, accepts=[PIXEL_A, PIXEL_B])))
    assert await client.app[appkeys.RELOADER].reload()
    assert (await hit(client, PIXEL_A, eid="a1")).status == 200
    assert (await hit(client, PIXEL_B, eid="b1")).status == 200  # the reloaded `accepts`
    assert [(row["destination"], row["state"]) for row in rows(client.app[appkeys.SETTINGS])] == [
        ("main", "pending"), ("main", "pending")]


async def test_a_destination_removed_by_a_reload_stops_and_keeps_its_queue(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    # Its queued events wait, shown on /status, and go out (with the credentials last applied,
    # never its start-up ones) when it comes back.
    config = tmp_path / "config.yaml"
    main = destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A)
    other = destination_yaml("other", fake_graph.url, pixel_id=PIXEL_B)
    config.write_text(settings_yaml(tmp_path, main, other))
    client = operator_listener(await aiohttp_client(create_app(load_settings(config, env={}))))
    [main_worker] = [w for w in client.app[appkeys.RELAYS] if w.name == "main"]
    config.write_text(settings_yaml(tmp_path, other))
    assert await client.app[appkeys.RELOADER].reload()
    assert [w.name for w in client.app[appkeys.RELAYS]] == ["other"]
    await wait_until(lambda: not main_worker.running)
    now = time.time()
    await client.app[appkeys.OUTBOX].enqueue([OutboxEntry(  # left behind in main's queue
        destination="main", pixel_id=PIXEL_A, test_event_code="", event_name="PageView",
        event_id="left-behind", event_time=int(now), expires_at=now + 3600,
        payload=b'{"event_name":"PageView","event_id":"left-behind"}')])
    status = await (await client.get("/status")).json()
    assert status["queued_for_unconfigured_destinations"] == {"main": 1}
    assert (await hit(client, PIXEL_A, eid="a1")).status == 200  # nobody takes PIXEL_A now
    config.write_text(settings_yaml(tmp_path, main.replace("TEST-TOKEN-main", "NEW-TOKEN"),
                                    other))
    assert await client.app[appkeys.RELOADER].reload()
    [request] = await fake_graph.wait_for_requests(1)
    assert request.query == {"access_token": "NEW-TOKEN"}
    assert [e["event_id"] for e in fake_graph.events] == ["left-behind"]
    await wait_until(lambda: [(row["destination"], row["state"]) for row in rows(
        client.app[appkeys.SETTINGS])] == [("main", "delivered"), ("", "unrouted")])


async def test_the_keyless_admin_listener_does_not_answer_web_pages(
    one_destination: Settings, aiohttp_client: Any
) -> None:
    """A page in a browser on the operator's machine can reach 127.0.0.1 too: cross-site
    requests (an Origin, Sec-Fetch-Site) and DNS rebinding (a foreign Host) are refused."""
    client = await aiohttp_client(create_app(one_destination))
    admin = await admin_site(client)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Host": "rebound.evil.example:9901"}):
        async with client.session.post(admin + "/dead-letters/replay", headers=headers) as answer:
            assert answer.status == 403, headers
            assert "web pages" in (await answer.json())["error"]
    for headers in ({}, {"Host": "localhost:9901"}, {"Sec-Fetch-Site": "none"}):
        async with client.session.get(admin + "/status", headers=headers) as answer:
            assert answer.status == 200, headers
