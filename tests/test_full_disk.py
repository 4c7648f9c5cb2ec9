"""The outbox on a really full disk (a small tmpfs filled to the last page): readiness says so,
ingest answers 503 with Retry-After, the gateway starts anyway, and everything recovers by itself
when space returns, nothing acknowledged lost."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway import storage
from gateway.config import parse_settings
from gateway.errors import OutboxIncompatible, OutboxUnavailable
from gateway.settings import Settings, StorageSettings
from gateway.storage import Outbox, OutboxEntry, deferred, open_outbox, start_outbox
from gateway.storage.sqlite.schema import SCHEMA_VERSION

from .conftest import (
    PIXEL_A,
    FakeClock,
    GatewayFactory,
    destination_yaml,
    settings_yaml,
    stored_rows,
    wait_until,
)
from .fake_graph import FakeGraph

KEY = "sk-test-backend-0123456789abcdef"


class Disk:
    """A tmpfs of its own: `fill()` takes every free page, `free()` gives them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (65536, 4096, 1):  # big steps, then to the last byte
                try:
                    while True:
                        os.write(fd, bytes(size))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A 1 MiB tmpfs under tmp_path, unmounted at the end (mounting needs root or
    CAP_SYS_ADMIN; the tests skip, saying so, where it is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.geteuid() != 0 or "permission denied" in mounted.stderr.lower():
            pytest.skip("mounting a tmpfs is not permitted here (needs root or CAP_SYS_ADMIN): "
                        + mounted.stderr.strip())
        raise RuntimeError(f"mount failed: {mounted.stderr.strip()}")
    try:
        yield Disk(mount)
    finally:
        if subprocess.run(["umount", str(mount)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)])  # never leave it mounted
            raise RuntimeError(f"{mount} was still busy at the end of the test")


@pytest.fixture
def quick_reopen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry opening the outbox every few milliseconds (the tests wait for it)."""
    monkeypatch.setattr(deferred, "FIRST_RETRY_SECONDS", 0.02)
    monkeypatch.setattr(deferred, "MAX_RETRY_SECONDS", 0.05)


def gateway_settings(tmp_path: Path, disk: Disk, graph_url: str) -> Settings:
    """One destination to the fake Graph, its outbox on the small disk, a server access key."""
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    keys = f"access_keys:\n  - name: backend\n    sha256: {digest}\n    pixels: [\"{PIXEL_A}\"]\n"
    yaml = settings_yaml(tmp_path, destination_yaml("main", graph_url, pixel_id=PIXEL_A),
                         extra=keys).replace(str(tmp_path / "gateway.db"),
                                             str(disk.path / "gateway.db"))
    return parse_settings(yaml, env={})


def entry(event_id: str) -> OutboxEntry:
    return OutboxEntry(destination="main", pixel_id=PIXEL_A, test_event_code="",
                       event_name="Purchase", event_id=event_id, event_time=1_800_000_000,
                       expires_at=1_900_000_000, payload=b"{}")


def hit(event_id: str) -> dict[str, str]:
    return {"id": PIXEL_A, "ev": "Purchase", "eid": event_id,
            "dl": "https://shop.example.com/checkout", "cd[value]": "10", "cd[currency]": "EUR"}


def server_event(event_id: str) -> dict[str, Any]:
    return {"data": [{"event_name": "Purchase", "event_time": int(time.time()) - 60,
                      "event_id": event_id, "action_source": "website",
                      "event_source_url": "https://shop.example.com/thanks",
                      "user_data": {"client_ip_address": "203.0.113.9",
                                    "client_user_agent": "Mozilla/5.0 Test/1.0"}}],
            "access_token": KEY}


async def assert_ingest_refused(client: TestClient[Any, Any]) -> None:
    """Browser hits and server events both get 503 with Retry-After."""
    response = await client.get("/tr", params=hit("refused"))
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    response = await client.post(f"/v26.0/{PIXEL_A}/events", json=server_event("refused"))
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0


async def readiness(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


def lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    """How many lines were logged containing `text`."""
    return sum(text in record.getMessage() for record in caplog.records)


def opening_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the outbox said while it opened late."""
    return [record.getMessage() for record in caplog.records if record.name == deferred.__name__]


# -- the engine --------------------------------------------------------------------------------
async def test_a_full_disk_is_a_write_problem_and_space_returning_clears_it(disk: Disk) -> None:
    outbox = await open_outbox(StorageSettings(path=disk.path / "o.db"), clock=FakeClock())
    try:
        await outbox.enqueue([entry("e1")])
        assert await outbox.write_problem() is None
        disk.fill()
        assert await outbox.write_problem() == "database or disk is full"
        with pytest.raises(OutboxUnavailable):
            await outbox.enqueue([entry("e2")])
        with pytest.raises(OutboxUnavailable, match="disk is full"):  # the relay's claim too
            await outbox.claim("main", 10)
        disk.free()
        assert await outbox.write_problem() is None
        [row] = (await outbox.claim("main", 10)).rows
        assert row.event_id == "e1"
    finally:
        await outbox.close()


async def test_an_up_to_date_store_opens_on_a_full_disk_without_writing(disk: Disk) -> None:
    # Another process has the file open (its -wal and -shm exist, as with `serve --workers N`):
    # a second one opening it on a full disk must only read.
    storage = StorageSettings(path=disk.path / "o.db")
    first = await open_outbox(storage, clock=FakeClock())
    try:
        disk.fill()
        second = await open_outbox(storage, clock=FakeClock())
        assert await second.rows() == []
        await second.close()
    finally:
        await first.close()


async def test_a_store_that_cannot_open_is_retried_with_one_line_each_way(
    disk: Disk, quick_reopen: None, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    attempts = []

    async def counted(*args: Any, **kwargs: Any) -> Outbox:
        attempts.append(time.monotonic())
        return await open_outbox(*args, **kwargs)

    monkeypatch.setattr(storage, "open_outbox", counted)
    disk.fill()
    outbox = await start_outbox(StorageSettings(path=disk.path / "o.db"), clock=FakeClock())
    try:
        problem = await outbox.write_problem()
        assert problem is not None and problem.startswith("the outbox cannot be opened")
        wakeup = outbox.wakeup("main")
        await wait_until(lambda: len(attempts) >= 4)  # failing again and again, quietly
        disk.free()
        await wait_until(wakeup.is_set)  # the store opened: waiting workers look again
        assert await outbox.write_problem() is None
        assert await outbox.rows() == []
        [failed, opened] = opening_lines(caplog)  # not one per attempt
        assert failed.startswith("the outbox cannot be opened: ")
        assert opened.endswith("is open: ingest and relay resume")
    finally:
        await outbox.close()


async def test_closing_before_the_store_opened_stops_the_attempts(
    disk: Disk, quick_reopen: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    disk.fill()
    outbox = await start_outbox(StorageSettings(path=disk.path / "o.db"), clock=FakeClock())
    await outbox.close()
    disk.free()
    with pytest.raises(OutboxUnavailable):
        await outbox.enqueue([entry("e1")])
    assert [line for line in opening_lines(caplog) if "is open" in line] == []


async def test_a_store_from_a_newer_gateway_is_not_retried(
    disk: Disk, quick_reopen: None, caplog: pytest.LogCaptureFixture
) -> None:
    storage = StorageSettings(path=disk.path / "o.db")
    with contextlib.closing(sqlite3.connect(storage.path)) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(OutboxIncompatible):  # at start: start-up stops, as before
        await start_outbox(storage, clock=FakeClock())
    disk.fill()  # found only once space returns: stays unavailable, said once
    outbox = await start_outbox(storage, clock=FakeClock())
    try:
        disk.free()
        await wait_until(lambda: len(opening_lines(caplog)) == 2)
        assert "no longer retrying" in opening_lines(caplog)[1]
        assert await outbox.write_problem() == "the outbox cannot be opened (see the log)"
    finally:
        await outbox.close()


# -- the gateway --------------------------------------------------------------------------------
async def test_readiness_and_ingest_refuse_on_a_full_disk_and_recover(
    disk: Disk, tmp_path: Path, start_gateway: GatewayFactory, fake_graph: FakeGraph,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = gateway_settings(tmp_path, disk, fake_graph.url)
    client = await start_gateway(settings)
    assert (await client.get("/tr", params=hit("before"))).status == 200
    await fake_graph.wait_for_events(1)
    assert await readiness(client) == (200, {"status": "ready"})

    disk.fill()
    status, body = await readiness(client)
    assert status == 503
    assert body["problems"] == ["outbox is not writable: database or disk is full"]
    await assert_ingest_refused(client)
    await assert_ingest_refused(client)
    assert lines(caplog, "outbox commit failed") == 1  # once, not per refused request

    disk.free()
    assert await readiness(client) == (200, {"status": "ready"})
    assert (await client.get("/tr", params=hit("after"))).status == 200
    events = await fake_graph.wait_for_events(2)
    assert [event["event_id"] for event in events] == ["before", "after"]
    assert [row.event_id for row in stored_rows(settings)] == ["before", "after"]


@pytest.mark.parametrize("store", ["existing", "new"])
async def test_the_gateway_starts_on_a_full_disk_and_recovers_without_a_restart(
    store: str, disk: Disk, tmp_path: Path, start_gateway: GatewayFactory, fake_graph: FakeGraph,
    quick_reopen: None, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = gateway_settings(tmp_path, disk, fake_graph.url)
    if store == "existing":  # left by a previous run (closed: its -wal and -shm are gone)
        await (await open_outbox(settings.storage, clock=time.time)).close()
    disk.fill()
    client = await start_gateway(settings)

    assert (await client.get("/healthz")).status == 200
    status, body = await readiness(client)
    assert status == 503
    [problem] = body["problems"]
    # The kind of problem only: a public probe names no path (and no database's own words).
    assert problem == "outbox is not writable: the outbox cannot be opened"
    await assert_ingest_refused(client)
    report = await (await client.get("/status")).json()
    assert report["outbox_unavailable"].startswith("the outbox cannot be opened")
    assert report["destinations"][0]["queued"] == 0
    assert (await client.get("/metrics")).status == 200
    await wait_until(lambda: lines(caplog, "destination main: outbox error") == 1)

    disk.free()
    await wait_until(lambda: len(opening_lines(caplog)) == 2)
    assert await readiness(client) == (200, {"status": "ready"})
    # The relay claims again, then waits to be woken by new rows (not its 5 s idle poll).
    await wait_until(lambda: lines(caplog, "destination main: the outbox works again") == 1)
    assert (await client.get("/tr", params=hit("after"))).status == 200
    [event] = await fake_graph.wait_for_events(1, timeout=2)
    assert event["event_id"] == "after"
    assert len(opening_lines(caplog)) == 2  # one line when it failed, one when it opened
    assert lines(caplog, "destination main: outbox error") == 1
    assert not [record for record in caplog.records if record.exc_info]  # no tracebacks
    assert (await (await client.get("/status")).json())["outbox_unavailable"] is None
