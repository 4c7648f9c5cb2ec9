"""The whole gateway in one view: two gateway processes on one SQLite file (two `create_app`
instances, as `serve --workers 2` runs them), each answering for both: every process live or
gone, the relay state merged from the relaying process, the chart's counts summed, and a hit
received by the other process in the live events within a second; nothing written while nobody
watches."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway import appkeys
from gateway.app import create_app
from gateway.settings import Settings
from gateway.storage import LiveEvent, open_existing
from gateway.whole import report
from gateway.whole.feed import LATE_SECONDS, Cursor
from gateway.whole.report import FORGET_SECONDS, GONE_SECONDS
from gateway.whole.view import REPORTER, Process, WholeView

from ..conftest import PIXEL_A, FakeClock, wait_until
from ..fake_graph import FakeGraph
from .conftest import BEARER, console_settings
from .test_api import hit, read_event

T = TypeVar("T")
Client = TestClient[Any, Any]


@pytest.fixture(autouse=True)
def quick_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes report every 50 ms instead of every few seconds (tests wait for reports)."""
    monkeypatch.setattr(report, "REPORT_SECONDS", 0.05)


async def two_processes(aiohttp_client: Any, settings: Settings,
                        *clocks: Callable[[], float]) -> tuple[Client, Client]:
    """Worker 0 (it relays) and worker 1 of one gateway, sharing its SQLite outbox."""
    clients = [await aiohttp_client(TestServer(create_app(settings, clock=clock, worker=index)))
               for index, clock in enumerate(clocks or (time.time, time.time))]
    return clients[0], clients[1]


async def api(client: Client, path: str) -> Any:
    answer = await client.get(f"/admin/api/{path}", headers=BEARER)
    assert answer.status == 200
    return await answer.json()


async def until(fetch: Callable[[], Awaitable[T]], condition: Callable[[T], bool],
                timeout: float = 5.0) -> T:
    """Fetch again until `condition` holds (bounded): for reports that come every interval."""
    async with asyncio.timeout(timeout):
        while not condition(value := await fetch()):
            await asyncio.sleep(0.02)
    return value


def process_id(client: Client) -> str:
    return client.app[REPORTER].process.id


async def test_every_process_shows_all_of_them_and_one_silent_is_gone_then_forgotten(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    clock_0, clock_1 = FakeClock(time.time()), FakeClock(time.time())
    settings = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    first, second = await two_processes(aiohttp_client, settings, clock_0, clock_1)
    for client in (first, second):
        status = await until(lambda c=client: api(c, "status"),  # type: ignore[misc]
                             lambda s: len(s["processes"]) == 2)
        listed = {p["worker"]: p for p in status["processes"]}
        assert not any(p["gone"] for p in listed.values())
        assert listed[0]["relays"] is True and listed[1]["relays"] is False
        assert listed[client.app[appkeys.WORKER][0]]["answered"] is True
        assert sum(p["answered"] for p in listed.values()) == 1
        assert {p["node"] for p in listed.values()} == {socket.gethostname()}
        assert {p["id"] for p in listed.values()} == {process_id(first), process_id(second)}
    # Worker 1 relays nothing, yet shows the relay state of worker 0.
    [main] = await api(second, "destinations")
    assert main["state"] == "active" and main["relayed_here"] is False
    assert main["relayed_by"] == [process_id(first)]

    # Worker 0 silent for longer than three reports (by the store's clock): gone.
    clock_1.now += GONE_SECONDS + 1
    status = await api(second, "status")
    [gone] = [p for p in status["processes"] if p["worker"] == 0]
    assert gone["gone"] is True and gone["seen_seconds_ago"] > GONE_SECONDS
    [main] = await api(second, "destinations")
    assert main["state"] == "not_relayed" and main["relayed_by"] == []
    assert status["destinations"][0]["state"] is None

    # Stopped for good: forgotten once its counts have left the chart.
    await first.close()
    clock_1.now += FORGET_SECONDS
    await until(lambda: api(second, "status"),
                lambda s: [p["worker"] for p in s["processes"]] == [1])


async def test_a_process_that_stops_is_gone_at_once(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    settings = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    first, second = await two_processes(aiohttp_client, settings)
    await until(lambda: api(first, "status"), lambda s: len(s["processes"]) == 2)
    await second.close()  # its last report says it stopped
    status = await api(first, "status")
    assert [(p["worker"], p["gone"]) for p in status["processes"]] == [(0, False), (1, True)]


async def test_a_pause_where_the_destination_is_relayed_shows_on_every_process(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    settings = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    first, second = await two_processes(aiohttp_client, settings)
    fake_graph.fail_with(401, 190, "Error validating access token: Session has expired")
    await hit(second, "paused-1")  # taken by worker 1, refused to worker 0's relay
    [main] = await until(lambda: api(second, "destinations"),
                         lambda d: d[0]["state"] == "paused")
    assert main["paused_reason"] == "access token refused" and main["token_invalid"] is True
    assert "Session has expired" in main["last_error"] and main["last_error_at"]
    assert main["relayed_here"] is False and main["relayed_by"] == [process_id(first)]
    assert main["queued"] == 1
    status = await api(second, "status")
    assert status["destinations"][0]["state"] == "paused"


async def test_the_chart_counts_what_every_process_received_and_delivered(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    settings = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    first, second = await two_processes(aiohttp_client, settings)
    await hit(first, "chart-1")
    await hit(second, "chart-2")
    await hit(second, "chart-3")
    await fake_graph.wait_for_events(3)
    traffic = await until(lambda: api(second, "traffic"),
                          lambda t: (t["received_total"], t["delivered_total"]) == (3, 3))
    assert len(traffic["minutes"]) == len(traffic["received"]) == len(traffic["delivered"]) == 60
    assert traffic["received"][-1] + traffic["received"][-2] == 3  # this minute (or the last)
    assert traffic["minutes"][-1] - traffic["minutes"][0] == 59 * 60
    assert traffic["processes"] == 2


async def test_the_stream_shows_a_hit_the_other_process_received_within_a_second(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    settings = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    first, second = await two_processes(aiohttp_client, settings)
    # Nobody watches: nobody forwards, nothing is written.
    await hit(second, "unwatched")
    await fake_graph.wait_for_events(1)
    assert not second.app[appkeys.EVENTS].listening
    stream = await first.get("/admin/api/events/stream", headers=BEARER)
    assert stream.status == 200
    bus = second.app[appkeys.EVENTS]
    await wait_until(lambda: bus.listening)  # worker 1 learnt from the store that one watches
    sent = time.monotonic()
    await hit(second, "seen-elsewhere")
    async with asyncio.timeout(1.0):
        incoming = await read_event(stream, "incoming")
    assert time.monotonic() - sent < 1.0
    assert incoming["event_id"] == "seen-elsewhere" and incoming["pixel"] == PIXEL_A
    assert incoming["outcome"] == "routed" and incoming["worker"] == 1
    assert incoming["process"] == process_id(second)
    assert incoming["node"] == socket.gethostname()
    assert "visitor@example.com" not in str(incoming)
    stream.close()
    await wait_until(lambda: not bus.listening)  # nobody watches any more: forwarding stops
    outbox = await open_existing(settings.storage, clock=time.time)
    assert outbox is not None
    try:
        written = await outbox.last_live_event()
        assert [e.process for e in await outbox.live_events(0, 100)] == [process_id(second)]
        await hit(second, "unwatched-again")
        await fake_graph.wait_for_events(3)
        assert await outbox.last_live_event() == written
        assert await outbox.watchers() == {}
    finally:
        await outbox.close()


# -- merging and reading, piece by piece ----------------------------------------------------------
def relaying(process: str, now: float, **state: Any) -> Process:
    return Process(process, now, {"destinations": {"main": {
        "state": "active", "paused_reason": None, "token_invalid": False, "circuit": None,
        "last_delivery": None, "last_error": None, "last_error_at": None, **state}}},
        gone=False)


def test_the_merged_state_is_the_worst_with_the_newest_delivery_and_error() -> None:
    now = 1_800_000_000.0
    view = WholeView(now, [
        relaying("a:1", now, last_delivery=now - 5, last_error="old", last_error_at=now - 50),
        relaying("b:2", now, state="paused", paused_reason="access token refused",
                 token_invalid=True, last_delivery=now - 9, last_error="new",
                 last_error_at=now - 10),
        relaying("c:3", now, state="backoff"),
    ])
    merged = view.relay("main")
    assert merged is not None
    assert merged["state"] == "paused" and merged["paused_reason"] == "access token refused"
    assert merged["token_invalid"] is True and merged["last_delivery"] == now - 5
    assert (merged["last_error"], merged["last_error_at"]) == ("new", now - 10)
    assert merged["relayed_by"] == ["a:1", "b:2", "c:3"]
    assert view.relay("other") is None
    gone = relaying("b:2", now, state="paused")
    gone.gone = True
    assert WholeView(now, [relaying("a:1", now), gone]).relay("main")["state"] == "active"  # type: ignore[index]


def event(n: int) -> LiveEvent:
    return LiveEvent(n, "b:2", b"{}")


def test_a_reader_waits_for_an_id_committed_late_then_counts_it_lost() -> None:
    cursor = Cursor(10)
    fresh, lost = cursor.take([event(11), event(13)], now=0.0)
    assert [e.id for e in fresh] == [11, 13] and lost == 0 and cursor.floor == 11
    # 12 comes late (another writer committed after 13): read, not lost.
    fresh, lost = cursor.take([event(12), event(13)], now=1.0)
    assert [e.id for e in fresh] == [12] and lost == 0 and cursor.floor == 13
    # 15 never comes (rolled back, or trimmed before it was read): lost after a while.
    assert cursor.take([event(14), event(16)], now=2.0) == ([event(14), event(16)], 0)
    assert cursor.take([event(16)], now=2.0 + LATE_SECONDS / 2) == ([], 0)
    assert cursor.take([event(16)], now=2.0 + LATE_SECONDS) == ([], 1)
    assert cursor.floor == 16 and not cursor.seen


async def test_a_report_in_an_unknown_shape_is_left_out(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    settings = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    client = await aiohttp_client(TestServer(create_app(settings)))
    outbox = client.app[appkeys.OUTBOX]
    for process, body in (("other:1", b'{"destinations": {"main": {}}, "minutes": []}'),
                          ("other:2", b'{"destinations": {}, "minutes": [["x", 1, 2]]}'),
                          ("other:3", b"not json")):
        await outbox.put_report(process, 0.0, body, forget_before=0)
    status = await api(client, "status")
    assert [p["id"] for p in status["processes"]] == [process_id(client)]
    assert (await api(client, "traffic"))["processes"] == 1
