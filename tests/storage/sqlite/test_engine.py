"""The SQLite engine's own behaviour: its indexes, its transactions on a connection thread,
damaged files, locks held by other connections, and schema migrations."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import OutboxIncompatible
from gateway.settings import StorageSettings
from gateway.storage import DeadLetterFilter, open_existing, open_outbox
from gateway.storage.sqlite import SqliteOutbox
from gateway.storage.sqlite.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from gateway.storage.sqlite.sqlthread import SqliteThread

from ...conftest import FakeClock as Clock
from ...conftest import wait_until
from ..conftest import query
from ..test_conformance import entry


@pytest.fixture
async def outbox(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteOutbox]:
    box = await SqliteOutbox.open(tmp_path / "o.db", commit_interval=0.005, lease_seconds=30,
                                  clock=clock)
    yield box
    await box.close()


async def test_open_counts_come_from_the_queue_and_dead_letter_indexes(
    outbox: SqliteOutbox, tmp_path: Path
) -> None:
    await outbox.enqueue([entry(n) for n in range(3)])
    # /metrics and /status poll these: no step may read the finished rows kept for days.
    statements: list[str] = []
    async with outbox.read() as db:
        await db.set_trace_callback(statements.append)
    try:
        assert await outbox.open_counts() == {("main", "pending"): 3}
    finally:
        async with outbox.read() as db:
            await db.set_trace_callback(None)
    [sql] = statements
    with contextlib.closing(sqlite3.connect(tmp_path / "o.db")) as db:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
    scans = [step for step in plan if step.startswith(("SCAN", "SEARCH"))]
    assert sorted(scans) == ["SCAN outbox USING INDEX outbox_dead",
                             "SCAN outbox USING INDEX outbox_due"]


async def test_stale_dedup_keys_are_pruned_in_chunks(
    outbox: SqliteOutbox, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await outbox.enqueue([entry(n) for n in range(5)])
    await outbox.finish((await outbox.claim("main", 10, dedup_seconds=3600)).rows)
    clock.now += 7200
    await outbox.enqueue([entry(9)])
    await outbox.finish((await outbox.claim("main", 10, dedup_seconds=3600)).rows)
    # rows per transaction: finished rows (none here), drop counts (none), then stale keys
    deleted: list[int] = []
    real_write = outbox.write

    async def write(fn: Any, *, relaxed: bool = False) -> Any:
        deleted.append(result := await real_write(fn, relaxed=relaxed))
        return result

    monkeypatch.setattr(outbox, "write", write)
    await outbox.prune(older_than=0, dedup_older_than=clock.now - 3600, chunk=2)
    assert deleted == [0, 0, 2, 2, 1]  # stale keys: 5 in chunks of 2
    assert query(tmp_path / "o.db", "SELECT event_id FROM dedup") == [("e9",)]


async def test_a_failed_commit_leaves_the_connection_usable(tmp_path: Path) -> None:
    # A deferred foreign key fails at COMMIT, as a full disk would: SQLite may leave the
    # transaction open, and an open one would refuse every later BEGIN and hold the lock.
    db = await SqliteThread.open(tmp_path / "t.db", synchronous="FULL", name="test")
    try:
        await db.run(lambda conn: conn.executescript(
            "PRAGMA foreign_keys=ON; CREATE TABLE parent (id INTEGER PRIMARY KEY);"
            "CREATE TABLE child (parent INTEGER REFERENCES parent (id)"
            " DEFERRABLE INITIALLY DEFERRED);"))
        with pytest.raises(sqlite3.IntegrityError):
            await db.transaction(lambda conn: conn.execute("INSERT INTO child VALUES (7)"))
        await db.transaction(lambda conn: conn.execute("INSERT INTO parent VALUES (7)"))
        assert await db.run(lambda conn: conn.execute(
            "SELECT COUNT(*) FROM parent").fetchone()) == (1,)
    finally:
        await db.close()


async def test_a_cancelled_write_returns_only_once_its_transaction_has_ended(
    outbox: SqliteOutbox
) -> None:
    ended = threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        time.sleep(0.2)
        conn.execute("DELETE FROM dedup")
        ended.set()

    task = asyncio.create_task(outbox.write(slow))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended.is_set()  # its caller (and the lock it held) waited for the transaction


async def test_a_cancelled_claim_gives_its_rows_back(outbox: SqliteOutbox, tmp_path: Path) -> None:
    # A shutdown cancels a claim that waits for another process's write lock: the claim still
    # commits once it gets the lock (transactions run to their end), so its rows must not stay
    # leased, and unsent, until the lease runs out.
    await outbox.enqueue([entry(1)])
    other = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        claiming = asyncio.create_task(outbox.claim("main", 10))
        await asyncio.sleep(0.2)  # its BEGIN waits in the connection's thread
        claiming.cancel()
        await asyncio.sleep(0.05)
        other.rollback()
        with pytest.raises(asyncio.CancelledError):
            await claiming
    finally:
        other.close()
    assert await outbox.counts() == {("main", "pending"): 1}
    assert [r.event_id for r in (await outbox.claim("main", 10)).rows] == ["e1"]


async def test_a_row_without_its_event_json_becomes_a_dead_letter(
    outbox: SqliteOutbox, tmp_path: Path
) -> None:
    await outbox.enqueue([entry(1), entry(2)])
    with contextlib.closing(sqlite3.connect(tmp_path / "o.db")) as db, db:  # a damaged file
        db.execute("DELETE FROM payloads WHERE id = (SELECT id FROM outbox WHERE event_id = 'e1')")
    assert [r.payload for r in await outbox.rows()] == [None, b'{"event_id":"e2"}']
    claim = await outbox.claim("main", 10)
    assert [r.event_id for r in claim.rows] == ["e2"] and claim.broken == 1
    [dead] = await outbox.dead_letters(DeadLetterFilter(), 10)
    assert (dead.event_id, dead.reason) == ("e1", "invalid")
    assert "missing" in (dead.last_error or "")


# -- schema versions -------------------------------------------------------------------------
def version_1_file(path: Path) -> None:
    """A file as the first release wrote it: its schema, one queued row with its event."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(SCHEMA)
        db.execute("PRAGMA user_version=1")
        db.execute(
            "INSERT INTO outbox (id, destination, pixel_id, test_event_code, event_name, "
            "event_id, event_time, expires_at, state, created_at, available_at, updated_at) "
            "VALUES (1, 'main', '111', '', 'PageView', 'old', 1800000000, 1e308, 'pending', "
            "1, 1, 1)")
        db.execute("INSERT INTO payloads (id, payload) VALUES (1, ?)", (b'{"event_id":"old"}',))


async def test_a_file_of_the_first_version_is_migrated_and_keeps_working(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "o.db"
    version_1_file(path)
    outbox = await open_outbox(StorageSettings(path=path), clock=clock)
    try:
        assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        await outbox.enqueue([entry(1, context=b'{"gclid":"x"}')])
        rows = (await outbox.claim("main", 10)).rows
        assert [(r.event_id, r.payload, r.context) for r in rows] == [
            ("old", b'{"event_id":"old"}', b""), ("e1", b'{"event_id":"e1"}', b'{"gclid":"x"}')]
        assert await outbox.finish(rows) == 2
    finally:
        await outbox.close()
    again = await open_outbox(StorageSettings(path=path), clock=clock)  # migrating is done once
    try:
        assert await again.counts() == {("main", "delivered"): 2}
    finally:
        await again.close()


async def test_inspecting_an_old_file_does_not_migrate_it(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "o.db"
    version_1_file(path)
    outbox = await open_existing(StorageSettings(path=path), clock=clock)
    assert outbox is not None
    try:
        [row] = await outbox.rows()
        assert (row.event_id, row.payload, row.context) == ("old", b'{"event_id":"old"}', b"")
    finally:
        await outbox.close()
    assert query(path, "PRAGMA user_version") == [(1,)]


def version_2_file(path: Path) -> None:
    """A file as the release before drop counts wrote it: one queued row with its context."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(SCHEMA)
        for statement in MIGRATIONS[2]:
            db.execute(statement)
        db.execute("PRAGMA user_version=2")
        db.execute(
            "INSERT INTO outbox (id, destination, pixel_id, test_event_code, event_name, "
            "event_id, event_time, expires_at, state, created_at, available_at, updated_at) "
            "VALUES (1, 'main', '111', '', 'PageView', 'old', 1800000000, 1e308, 'pending', "
            "1, 1, 1)")
        db.execute("INSERT INTO payloads (id, payload, context) VALUES (1, ?, ?)",
                   (b'{"event_id":"old"}', b'{"gclid":"g"}'))


async def test_a_file_of_version_2_gains_drop_counts_and_keeps_its_rows(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "o.db"
    version_2_file(path)
    outbox = await open_outbox(StorageSettings(path=path), clock=clock)
    try:
        assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        outbox.count_drop("drop bots", "browser", "PageView")
        await outbox.enqueue([entry(1)])
        rows = (await outbox.claim("main", 10)).rows
        assert [(r.event_id, r.context) for r in rows] == [("old", b'{"gclid":"g"}'), ("e1", b"")]
        assert [(d.rule, d.events) for d in await outbox.drops()] == [("drop bots", 1)]
    finally:
        await outbox.close()


async def test_inspecting_a_version_2_file_shows_no_drops_and_leaves_it_as_is(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "o.db"
    version_2_file(path)
    outbox = await open_existing(StorageSettings(path=path), clock=clock)
    assert outbox is not None
    try:
        assert await outbox.drops() == []
        assert [r.event_id for r in await outbox.changes(after_id=0, since=0, limit=10)] == ["old"]
    finally:
        await outbox.close()
    assert query(path, "PRAGMA user_version") == [(2,)]


async def test_drops_alone_are_committed_after_the_interval_in_one_write(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = await SqliteOutbox.open(tmp_path / "o.db", clock=clock)
    monkeypatch.setattr(outbox._group, "drops_interval", 0.05)
    writes: list[bool] = []
    real_write = outbox._file.write  # what every write of the file goes through

    async def write(fn: Any, *, relaxed: bool = False) -> Any:
        writes.append(relaxed)
        return await real_write(fn, relaxed=relaxed)

    monkeypatch.setattr(outbox._file, "write", write)
    try:
        for _ in range(1000):
            outbox.count_drop("drop bots", "browser", "PageView")
        await wait_until(lambda: query(tmp_path / "o.db", "SELECT count FROM drops") == [(1000,)])
        assert writes == [True]  # a thousand drops, one write (without fsync)
    finally:
        await outbox.close()


async def test_following_reads_indexes_not_the_rows_kept(
    outbox: SqliteOutbox, tmp_path: Path
) -> None:
    statements: list[str] = []
    async with outbox.read() as db:
        await db.set_trace_callback(statements.append)
    try:
        await outbox.changes(after_id=0, since=0, limit=10)
    finally:
        async with outbox.read() as db:
            await db.set_trace_callback(None)
    [sql] = statements
    with contextlib.closing(sqlite3.connect(tmp_path / "o.db")) as db:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
    scans = [step for step in plan if step.startswith(("SCAN", "SEARCH"))]
    # Never a scan of the whole table: new ids, finished rows by time, queue, dead letters.
    assert all("USING INDEX" in step or "PRIMARY KEY" in step for step in scans), plan
    assert {"SCAN outbox USING INDEX outbox_due", "SCAN outbox USING INDEX outbox_dead",
            "SEARCH outbox USING INDEX outbox_finished (updated_at>?)"} <= set(scans)


async def test_inspecting_creates_no_file(tmp_path: Path, clock: Clock) -> None:
    assert await open_existing(StorageSettings(path=tmp_path / "o.db"), clock=clock) is None
    assert not (tmp_path / "o.db").exists()


async def test_a_file_from_a_newer_gateway_is_refused(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "o.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(OutboxIncompatible, match="newer"):
        await open_outbox(StorageSettings(path=path), clock=clock)
