"""End to end through the relay: routing to destinations, batching, retries, dry run,
durability across restarts, and graceful shutdown, against a local fake Graph API."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway import appkeys
from gateway.app import create_app
from gateway.config import parse_settings
from gateway.settings import Settings, StorageSettings
from gateway.storage import OutboxEntry, open_outbox
from gateway.storage.sqlite import SqliteOutbox  # the engine the gateway opens: patched

from ..conftest import (
    PIXEL_A,
    PIXEL_B,
    FakeClock,
    GatewayFactory,
    destination_yaml,
    graph_server,
    settings_yaml,
    stored_rows,
    wait_until,
)
from ..conftest import (
    outbox_rows as rows,
)
from ..fake_graph import FakeGraph

PIXEL_C = "333333333333333"


def states(settings: Settings) -> list[tuple[str, str, str | None]]:
    return [(row.destination, row.state, row.last_error) for row in stored_rows(settings)]


async def queue(storage: StorageSettings, *event_ids: str) -> None:
    """PageViews for PIXEL_A's destination `main`, committed as another process would."""
    outbox = await open_outbox(storage, clock=time.time)
    now = time.time()
    try:
        await outbox.enqueue([OutboxEntry(
            destination="main", pixel_id=PIXEL_A, test_event_code="", event_name="PageView",
            event_id=event_id, event_time=int(now), expires_at=now + 3600,
            payload=b'{"event_name":"PageView","event_id":"%s"}' % event_id.encode(),
        ) for event_id in event_ids])
    finally:
        await outbox.close()


async def hit(client: Any, pixel: str, name: str = "PageView", **params: str) -> None:
    params.setdefault("dl", "https://shop.example.com/")
    response = await client.get("/tr", params={"id": pixel, "ev": name, **params})
    assert response.status == 200, await response.text()


async def test_each_destination_gets_only_the_pixels_it_accepts(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path,
        destination_yaml("shop-a", fake_graph.url, pixel_id=PIXEL_A),
        destination_yaml("shop-b", fake_graph.url, pixel_id=PIXEL_B),
        destination_yaml("all", fake_graph.url, pixel_id=PIXEL_C, accepts="*"),
    ), env={})
    client = await start_gateway(settings)
    await hit(client, PIXEL_A, eid="a1")
    await hit(client, PIXEL_B, eid="b1")
    await hit(client, PIXEL_B, eid="b2")
    await fake_graph.wait_for_events(6)
    received: dict[str, set[str]] = {}
    for request in fake_graph.accepted:
        token = request.query["access_token"]
        received.setdefault(f"{token}->{request.pixel_id}", set()).update(
            e["event_id"] for e in request.events
        )
    assert received == {
        f"TEST-TOKEN-shop-a->{PIXEL_A}": {"a1"},
        f"TEST-TOKEN-shop-b->{PIXEL_B}": {"b1", "b2"},
        f"TEST-TOKEN-all->{PIXEL_C}": {"a1", "b1", "b2"},
    }


async def test_without_pixel_id_each_event_goes_to_the_pixel_its_hit_named(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("pass", fake_graph.url, batch_size=100)), env={})
    client = await start_gateway(settings)
    await asyncio.gather(*(hit(client, pixel, eid=f"{pixel[0]}{n}")
                           for n in range(3) for pixel in (PIXEL_A, PIXEL_B)))
    await fake_graph.wait_for_events(6)
    by_pixel: dict[str, set[str]] = {}
    for request in fake_graph.accepted:
        by_pixel.setdefault(request.pixel_id, set()).update(e["event_id"] for e in request.events)
    assert by_pixel == {PIXEL_A: {"10", "11", "12"}, PIXEL_B: {"20", "21", "22"}}


async def test_unrouted_events_are_kept_with_a_reason(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory,
    one_destination: Settings,
) -> None:
    client = await start_gateway(one_destination)
    await hit(client, PIXEL_B)
    assert states(one_destination) == [("", "unrouted", f"no destination accepts pixel {PIXEL_B}")]
    metrics = await (await client.get("/metrics")).text()
    assert "gateway_events_unrouted_total 1.0" in metrics


async def test_batches_respect_batch_size_and_deliver_every_event_once(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A, batch_size=10,
                                   max_in_flight=2)), env={})
    client = await start_gateway(settings)
    await asyncio.gather(*(hit(client, PIXEL_A, eid=f"e{n}") for n in range(45)))
    events = await fake_graph.wait_for_events(45)
    assert sorted(e["event_id"] for e in events) == sorted(f"e{n}" for n in range(45))
    assert all(len(r.events) <= 10 for r in fake_graph.requests)
    await wait_until(lambda: all(s == "delivered" for _, s, _ in states(settings)))


async def test_steady_traffic_is_sent_in_batches_that_linger_to_fill(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hits committed back to back for ~1 s. After a claim that took rows but did not fill a
    # batch, the next claim waits the linger (a relay that claimed again as soon as it handed
    # a batch off sent a request per handful of events). A busy machine only lengthens gaps.
    claims: list[tuple[float, float, int]] = []  # (started, returned, rows)
    real_claim = SqliteOutbox.claim

    async def timed_claim(self: SqliteOutbox, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        claim = await real_claim(self, *args, **kwargs)
        claims.append((started, time.monotonic(), len(claim.rows)))
        return claim

    monkeypatch.setattr(SqliteOutbox, "claim", timed_claim)
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A, linger_ms=300)),
        env={})
    client = await start_gateway(settings)
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        await asyncio.gather(*(hit(client, PIXEL_A, eid=f"e{sent + k}") for k in range(16)))
        sent += 16
    events = await fake_graph.wait_for_events(sent)
    assert sorted(e["event_id"] for e in events) == sorted(f"e{n}" for n in range(sent))
    gaps = [later[0] - earlier[1] for earlier, later in itertools.pairwise(claims) if earlier[2]]
    assert len(gaps) >= 2 and min(gaps) >= 0.29, claims


async def test_transient_failures_are_retried_until_delivered(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory,
    one_destination: Settings,
) -> None:
    fake_graph.fail_with(503, 2, "Service temporarily unavailable", times=2)
    client = await start_gateway(one_destination)
    await hit(client, PIXEL_A, eid="x1")
    [event] = await fake_graph.wait_for_events(1)
    assert event["event_id"] == "x1"
    assert len(fake_graph.requests) == 3
    await wait_until(lambda: states(one_destination) == [("main", "delivered", None)])
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_relay_requests_total{destination="main",outcome="retry"} 2.0' in metrics
    assert 'gateway_relay_events_total{destination="main",outcome="delivered"} 1.0' in metrics


async def test_timeouts_are_retried(
    tmp_path: Path, aiohttp_server: Any, start_gateway: GatewayFactory
) -> None:
    calls: list[int] = []

    async def slow_then_fast(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(1)
        return web.json_response({"events_received": 1})

    url = await graph_server(aiohttp_server, slow_then_fast)
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", url, pixel_id=PIXEL_A, timeout=0.2)), env={})
    client = await start_gateway(settings)
    await hit(client, PIXEL_A)
    await wait_until(lambda: states(settings) == [("main", "delivered", None)])
    assert len(calls) == 2


async def test_an_invalid_event_becomes_a_dead_letter_with_metas_message(
    fake_graph: FakeGraph, start_gateway: GatewayFactory, one_destination: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_graph.fail_with(400, 100, "Invalid parameter", error_subcode=2804003,
                         error_user_msg="The parameter event_time is too old")
    client = await start_gateway(one_destination)
    await hit(client, PIXEL_A, **{"ud[em]": "someone@example.com"})
    await wait_until(lambda: rows(one_destination)[0]["state"] == "dead")
    [row] = rows(one_destination)
    assert row["reason"] == "invalid"
    assert row["fbtrace_id"] == "AbCdEf"
    assert "code 100" in row["last_error"] and "event_time is too old" in row["last_error"]
    assert "TEST-TOKEN" not in caplog.text and "TEST-TOKEN" not in row["last_error"]
    assert "someone@example.com" not in caplog.text
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_dead_letters_total{destination="main",reason="invalid"} 1.0' in metrics


async def test_a_rate_limit_backs_off_the_whole_destination(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A)), env={})
    fake_graph.fail_with(400, 17, "User request limit reached")
    client = await start_gateway(settings)
    await hit(client, PIXEL_A, eid="first")
    await fake_graph.wait_for_requests(1)
    await wait_until(lambda: rows(settings)[0]["state"] == "pending")
    await hit(client, PIXEL_A, eid="second")
    status = await (await client.get("/status")).json()
    [main] = status["destinations"]
    assert main["state"] == "backoff" and "code 17" in main["last_error"]
    assert main["type"] == "meta_capi"
    assert main["sends_to"] == f"pixel {PIXEL_A} via {fake_graph.url}/v26.0"
    assert "TEST-TOKEN" not in str(status)
    assert main["queued"] == 2
    await asyncio.sleep(0.3)  # time enough for a relay ignoring the backoff to send "second"
    assert len(fake_graph.requests) == 1  # nothing else is sent while backing off


async def test_dry_run_sends_nothing_and_records_the_would_be_request(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A, access_token="")),
        env={})
    client = await start_gateway(settings)
    await hit(client, PIXEL_A, "Purchase", **{"cd[value]": "5", "cd[currency]": "USD",
                                              "ud[em]": "buyer@example.com"})
    await hit(client, PIXEL_A, "PageView")
    await wait_until(lambda: [s for _, s, _ in states(settings)] == ["dry_run", "dry_run"])
    payloads = [row.payload or b"" for row in stored_rows(settings)]
    assert b'"event_name":"Purchase"' in payloads[0]  # what would have been sent
    assert fake_graph.requests == []
    assert "would POST" in caplog.text
    assert f"{fake_graph.url}/v26.0/{PIXEL_A}/events" in caplog.text
    assert "buyer@example.com" not in caplog.text


async def test_events_acknowledged_before_a_restart_are_delivered_after_it(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    from gateway.app import create_app

    clock = FakeClock(time.time())
    # First life: the Graph API is down; hits are acknowledged and wait in the outbox with a
    # long backoff.
    fake_graph.fail_with(503, 1, "down", times=1000)
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A, retry_base_seconds=600,
        retry_max_seconds=600)), env={})
    first = await aiohttp_client(create_app(settings, clock=clock))
    for n in range(5):
        await hit(first, PIXEL_A, eid=f"r{n}")
    await fake_graph.wait_for_requests(1)
    await first.close()  # runs the app's cleanup: workers stop, outbox closes
    assert {state for _, state, _ in states(settings)} == {"pending"}

    # Second life, same file, an hour later: Graph is healthy again and the backlog drains.
    fake_graph.recover()
    clock.now += 3600
    await aiohttp_client(create_app(settings, clock=clock))
    await wait_until(lambda: len({e["event_id"] for e in fake_graph.events}) == 5)
    assert sorted({e["event_id"] for e in fake_graph.events}) == [f"r{n}" for n in range(5)]
    await wait_until(lambda: {s for _, s, _ in states(settings)} == {"delivered"})


async def test_a_refused_event_does_not_hold_back_the_others_in_its_batch(
    tmp_path: Path, aiohttp_server: Any, start_gateway: GatewayFactory
) -> None:
    delivered: list[str] = []

    async def refuse_poison(request: web.Request) -> web.Response:
        events = (await request.json())["data"]
        if any(e["event_id"] == "poison" for e in events):
            return web.json_response({"error": {
                "message": "Invalid parameter", "code": 100, "error_subcode": 2804003,
                "error_user_msg": "custom_data.foo is not allowed", "fbtrace_id": "T"}},
                status=400)
        delivered.extend(e["event_id"] for e in events)
        return web.json_response({"events_received": len(events)})

    url = await graph_server(aiohttp_server, refuse_poison)
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", url, pixel_id=PIXEL_A, linger_ms=200,
        retry_base_seconds=60, retry_max_seconds=60)), env={})
    client = await start_gateway(settings)
    await asyncio.gather(*(hit(client, PIXEL_A, eid=eid)
                           for eid in ("g1", "g2", "poison", "g3", "g4", "g5")))
    await wait_until(lambda: sorted(delivered) == ["g1", "g2", "g3", "g4", "g5"])
    await wait_until(lambda: [s for _, s, _ in states(settings)].count("delivered") == 5)
    await wait_until(lambda: "dead" in [s for _, s, _ in states(settings)])
    [dead] = [row for row in rows(settings) if row["state"] != "delivered"]
    assert (dead["state"], dead["reason"], dead["event_id"]) == ("dead", "invalid", "poison")
    assert "custom_data.foo is not allowed" in dead["last_error"]


async def test_redirects_are_not_followed(
    tmp_path: Path, aiohttp_server: Any, start_gateway: GatewayFactory
) -> None:
    seen: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        if request.method == "POST":
            raise web.HTTPFound("/elsewhere")
        return web.json_response({"events_received": 1})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    server = await aiohttp_server(app)
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", str(server.make_url("")).rstrip("/"), pixel_id=PIXEL_A,
        retry_base_seconds=60, retry_max_seconds=60)), env={})
    client = await start_gateway(settings)
    await hit(client, PIXEL_A)
    await wait_until(lambda: states(settings)[0][1] == "pending" and states(settings)[0][2])
    assert seen == [f"POST /v26.0/{PIXEL_A}/events"]
    assert "redirect" in (states(settings)[0][2] or "")


async def test_token_never_appears_in_stored_errors_even_percent_encoded(
    tmp_path: Path, aiohttp_server: Any, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "1234567890|SeCrEtAppSecret"

    async def echo_url(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"bad request to {request.url}",
                                            "code": 100}}, status=400)

    url = await graph_server(aiohttp_server, echo_url)
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", url, pixel_id=PIXEL_A, access_token=token,
        retry_base_seconds=60, retry_max_seconds=60)), env={})
    client = await start_gateway(settings)
    await hit(client, PIXEL_A)
    await wait_until(lambda: rows(settings)[0]["state"] == "dead")
    error = states(settings)[0][2] or ""
    assert "access_token=***" in error
    for leaked in (token, "SeCrEtAppSecret", "1234567890%7CSeCrEt"):
        assert leaked not in error and leaked not in caplog.text


async def test_worker_survives_outbox_errors(
    one_destination: Settings, fake_graph: FakeGraph, start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_next_due = SqliteOutbox.next_due
    failures = []

    async def flaky_next_due(self: SqliteOutbox, destination: str) -> float | None:
        if not failures:
            failures.append(1)
            raise OSError("disk I/O error")
        return await real_next_due(self, destination)

    monkeypatch.setattr(SqliteOutbox, "next_due", flaky_next_due)
    client = await start_gateway(one_destination)
    await wait_until(lambda: bool(failures))
    await hit(client, PIXEL_A, eid="after-error")
    [event] = await fake_graph.wait_for_events(1)
    assert event["event_id"] == "after-error"
    assert (await client.get("/readyz")).status == 200


async def test_shutdown_lets_in_flight_batches_finish(
    tmp_path: Path, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    from gateway.app import create_app

    started = asyncio.Event()
    finished: list[int] = []

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(len((await request.json())["data"]))
        return web.json_response({"events_received": 1})

    url = await graph_server(aiohttp_server, slow)
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", url, pixel_id=PIXEL_A, timeout=5)), env={})
    client = await aiohttp_client(create_app(settings))
    await hit(client, PIXEL_A)
    await asyncio.wait_for(started.wait(), 5)
    await client.close()  # shutdown while the batch is in flight
    assert finished == [1]
    assert states(settings) == [("main", "delivered", None)]


async def test_test_event_code_is_forwarded(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A, test_event_code="TEST123")), env={})
    client = await start_gateway(settings)
    await hit(client, PIXEL_A)
    await fake_graph.wait_for_events(1)
    assert fake_graph.accepted[0].body["test_event_code"] == "TEST123"


async def test_probes(one_destination: Settings, start_gateway: GatewayFactory) -> None:
    client = await start_gateway(one_destination)
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json()) == {"status": "ready"}


async def test_rows_another_serve_process_commits_are_relayed_promptly(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With `serve --workers N`, a hit committed by another process wakes nothing in the
    # relaying one: it must look for such rows often, not every 5 s.
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A)), env={})
    claims = 0
    real_claim = SqliteOutbox.claim

    async def counted_claim(self: SqliteOutbox, *args: Any, **kwargs: Any) -> Any:
        nonlocal claims
        claims += 1
        return await real_claim(self, *args, **kwargs)

    monkeypatch.setattr(SqliteOutbox, "claim", counted_claim)
    await aiohttp_client(TestServer(create_app(settings, worker=0)))
    await asyncio.sleep(1.0)  # the relay found the queue empty and waits
    # It looks by reading; a claim (a write transaction on the file every worker commits to)
    # follows only once something is due.
    assert claims == 1
    await queue(settings.storage, "from-worker-1")  # on the other process's connection
    [event] = await fake_graph.wait_for_events(1, timeout=2.5)
    assert event["event_id"] == "from-worker-1"


async def test_a_full_claim_of_mostly_duplicates_does_not_linger(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    # A backlog after an outage: the first claim (a full batch) is nine repeats of one event
    # and the event itself. The next batch must follow at once, not after a linger.
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A, batch_size=10, linger_ms=3000)), env={})
    await queue(settings.storage, *["same"] * 10, "next")
    await start_gateway(settings)
    await fake_graph.wait_for_events(1)
    started = time.monotonic()
    await fake_graph.wait_for_events(2, timeout=2.5)
    assert time.monotonic() - started < 2.0
    assert sorted(e["event_id"] for e in fake_graph.events) == ["next", "same"]


async def test_a_stop_that_arrives_during_a_claim_does_not_wait_out_the_linger(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Shutdown while a claim is running: the claimed batch is still sent, and the worker then
    # stops instead of lingering (a minute here) for a next batch it will never claim.
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", fake_graph.url, pixel_id=PIXEL_A, linger_ms=60_000)), env={})
    await queue(settings.storage, "queued")
    claiming, go_on = asyncio.Event(), asyncio.Event()
    real_claim = SqliteOutbox.claim

    async def held_claim(self: SqliteOutbox, *args: Any, **kwargs: Any) -> Any:
        claiming.set()
        await go_on.wait()
        return await real_claim(self, *args, **kwargs)

    monkeypatch.setattr(SqliteOutbox, "claim", held_claim)
    client = await start_gateway(settings)
    [worker] = client.server.app[appkeys.RELAYS]
    await asyncio.wait_for(claiming.wait(), 5)
    stopping = asyncio.create_task(worker.stop(timeout=10))
    await asyncio.sleep(0.05)  # the stop is in before the claim returns
    go_on.set()
    started = time.monotonic()
    await asyncio.wait_for(stopping, 15)
    assert time.monotonic() - started < 2.0
    assert [e["event_id"] for e in fake_graph.events] == ["queued"]
