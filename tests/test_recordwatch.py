"""The console's records reach every process sharing the store: a process polling the versions
hears of another's change, reads each kind only when it changed, and keeps the last records
while the store cannot be read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import OutboxUnavailable
from gateway.recordwatch import RecordWatch
from gateway.settings import StorageSettings
from gateway.storage import ConsoleRecord, Outbox, open_outbox

from .conftest import FakeClock, wait_until


@pytest.fixture
async def two_processes(tmp_path: Path) -> AsyncIterator[tuple[Outbox, Outbox]]:
    settings = StorageSettings(path=tmp_path / "o.db")
    first = await open_outbox(settings, clock=FakeClock(), shared=True)
    second = await open_outbox(settings, clock=FakeClock(), shared=True)
    yield first, second
    await first.close()
    await second.close()


async def test_another_process_change_is_heard_and_only_its_kind_is_read(
    two_processes: tuple[Outbox, Outbox],
) -> None:
    here, there = two_processes
    heard: dict[str, list[list[str]]] = {"destination": [], "access_key": []}
    watch = RecordWatch(here, interval=0.01)
    for kind in heard:
        watch.on(kind, lambda records, kind=kind: heard[kind].append([r.name for r in records]))
    await watch.refresh()
    assert heard == {"destination": [[]], "access_key": [[]]}  # the first read, even if empty

    await there.add_console_record("destination", "shop", "{}")
    task = asyncio.create_task(watch.watch())
    try:
        await wait_until(lambda: heard["destination"][-1:] == [["shop"]])
    finally:
        task.cancel()
    assert heard["access_key"] == [[]]  # unchanged: not read again


async def test_the_last_records_stay_while_the_store_cannot_be_read() -> None:
    class Broken:
        async def console_versions(self) -> dict[str, int]:
            raise OutboxUnavailable("the outbox database cannot be reached")

    heard: list[list[ConsoleRecord]] = []
    watch = RecordWatch(Broken(), interval=0.01)  # type: ignore[arg-type]
    watch.on("destination", heard.append)
    with pytest.raises(OutboxUnavailable):
        await watch.refresh()
    task = asyncio.create_task(watch.watch())
    await asyncio.sleep(0.05)  # several polls fail: no listener call, no crash
    assert not task.done()
    task.cancel()
    assert heard == []


async def test_a_listener_added_while_a_refresh_runs_is_heard_at_the_next(
    two_processes: tuple[Outbox, Outbox],
) -> None:
    # As when a part of the app registers its kind while the watch's first refresh awaits
    # the store: the refresh goes on with the listeners it started with.
    here, _ = two_processes
    watch = RecordWatch(here, interval=0.01)
    heard: list[str] = []

    def first(_records: list[ConsoleRecord]) -> None:
        heard.append("destination")
        watch.on("access_key", lambda _records: heard.append("access_key"))

    watch.on("destination", first)
    await watch.refresh()
    await watch.refresh()
    assert heard == ["destination", "access_key"]


async def test_a_failing_listener_is_tried_again_and_does_not_stop_the_others(
    two_processes: tuple[Outbox, Outbox], caplog: pytest.LogCaptureFixture,
) -> None:
    here, there = two_processes
    calls: list[list[str]] = []
    keys: list[list[str]] = []

    def flaky(records: list[ConsoleRecord]) -> None:
        calls.append([r.name for r in records])
        if len(calls) <= 2:
            raise ValueError("not this time")

    watch = RecordWatch(here)
    watch.on("destination", flaky)
    watch.on("access_key", lambda records: keys.append([r.name for r in records]))
    await there.add_console_record("destination", "shop", "{}")
    await there.add_console_record("access_key", "crm", "{}")
    for _ in range(4):
        await watch.refresh()  # never raises for a listener's failure
    assert calls == [["shop"], ["shop"], ["shop"]]  # tried until it took, then left alone
    assert keys == [["crm"]]  # the other kind applied at once
    assert caplog.text.count("applying the destination records failed") == 1
