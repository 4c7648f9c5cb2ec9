"""The log-structured SQLite outbox: the `Outbox` protocol over events, batches, cursors and
exception rows (see the package docstring). Writes, the group commit and the readiness probe go
through the sqlite engine's SqliteFile (a durable connection for ingest, a relaxed one for relay
bookkeeping, taking turns); reports run on a connection of their own, each inside one read
transaction."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import aiosqlite

from ...errors import OutboxUnavailable
from ..groupcommit import DROPS_INTERVAL, GroupCommitted
from ..readiness import SharedProbe
from ..sqlite.consolerecords import SqliteConsoleRecords
from ..sqlite.deadletters import replay_query
from ..sqlite.sqlfile import SqliteFile
from ..sqlite.sqlthread import SqliteThread
from ..sqlite.whole import WholeQueries
from ..types import (
    Claim,
    ClaimedRow,
    DeadLetter,
    DeadLetterFilter,
    DropCount,
    OutboxRow,
    QueueDepth,
    StoreSize,
)
from . import reports
from .acks import Outcome, acknowledge, expire, retry_now
from .batches import merge_done
from .claims import claim
from .routes import insert_events, last_row_id
from .schema import SCHEMA_VERSION, checked_version, migrate
from .upkeep import prune_chunk

__all__ = ["SqliteLogOutbox"]

T = TypeVar("T")

_STALE_KEYS = ("DELETE FROM dedup WHERE (destination, pixel_id, event_name, event_id) IN "
               "(SELECT destination, pixel_id, event_name, event_id FROM dedup "
               "WHERE seen_at < ? LIMIT ?)")


def _in_snapshot(fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.rollback()


class SqliteLogOutbox(GroupCommitted, SqliteConsoleRecords, WholeQueries):
    """Durable queue of events per destination on one SQLite file (WAL), one row per event."""

    def __init__(self, file: SqliteFile, reports_db: SqliteThread, *, commit_interval: float,
                 lease_seconds: float, clock: Callable[[], float],
                 drops_interval: float = DROPS_INTERVAL) -> None:
        self._file = file
        self._reports = reports_db
        self._lease = lease_seconds
        self._clock = clock
        self._version = SCHEMA_VERSION
        self._wakeups: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._live = asyncio.Event()  # live events added here (sqlite/whole.py)
        self._closed = False
        self._group = file.group_commit(insert_events, interval=commit_interval, clock=clock,
                                        committed=self._wake, drops_interval=drops_interval)
        self._readiness = SharedProbe(file.write_probe)

    @classmethod
    async def open(cls, path: Path, *, commit_interval: float = 0.002,
                   lease_seconds: float = 30.0, synchronous: str = "FULL",
                   clock: Callable[[], float] = time.time, create: bool = True
                   ) -> SqliteLogOutbox:
        """Open (creating if needed) the outbox file, migrated to this version; `create=False`:
        an existing file as it is, for inspection (the caller checks it exists)."""
        file, _ = await SqliteFile.open(path, synchronous=synchronous, create=create,
                                        prepare=migrate if create else checked_version)
        try:
            reports_db = await SqliteThread.open(path, synchronous="NORMAL", name="reports")
        except BaseException:
            await file.close()
            raise
        return cls(file, reports_db, commit_interval=commit_interval,
                   lease_seconds=lease_seconds, clock=clock)

    async def _close(self) -> None:
        self._closed = True
        await self._group.close()
        await self._reports.close()
        await self._file.close()

    # -- connections ---------------------------------------------------------------------------
    async def write(self, fn: Callable[[sqlite3.Connection], T], *, relaxed: bool = False) -> T:
        """Run `fn(connection)` as one transaction (see SqliteFile.write)."""
        return await self._file.write(fn, relaxed=relaxed)

    def read(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        """The reader the console records use (see SqliteFile.read)."""
        return self._file.read()

    async def _report(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` inside one read transaction on the reports connection."""
        try:
            return await self._reports.run(partial(_in_snapshot, fn))
        except sqlite3.OperationalError as exc:
            raise OutboxUnavailable(str(exc)) from exc

    def _has_records(self) -> bool:
        return True  # the console's tables are there from the first version

    # -- ingest side: the group commit (SqliteFile.group_commit, routes.insert_events) -------
    def _wake(self, destinations: set[str]) -> None:
        for name in destinations:
            self._wakeups[name].set()

    # -- relay side ----------------------------------------------------------------------------
    def wakeup(self, destination: str) -> asyncio.Event:
        """An event set whenever new rows for `destination` are committed here."""
        return self._wakeups[destination]

    async def claim(self, destination: str, limit: int, *, dedup_seconds: float = 0.0) -> Claim:
        now = self._clock()
        return await self._file.claim(
            lambda conn: claim(conn, destination, limit, now, now + self._lease, dedup_seconds),
            self.release)

    async def _acknowledge(self, rows: Sequence[ClaimedRow], outcome: Outcome) -> int:
        if not rows:
            return 0
        now = self._clock()
        return await self.write(lambda conn: acknowledge(conn, rows, outcome, now), relaxed=True)

    async def finish(self, rows: Sequence[ClaimedRow], state: str = "delivered") -> int:
        return await self._acknowledge(rows, Outcome(state))

    async def retry_later(self, rows: Sequence[ClaimedRow], delay: float, error: str) -> int:
        return await self._acknowledge(rows, Outcome("pending", delay=delay, error=error))

    async def release(self, rows: Sequence[ClaimedRow]) -> int:
        return await self._acknowledge(rows, Outcome("released"))

    async def dead_letter(self, rows: Sequence[ClaimedRow], reason: str, error: str,
                          fbtrace_id: str | None) -> int:
        return await self._acknowledge(
            rows, Outcome("dead", error=error, reason=reason, fbtrace_id=fbtrace_id))

    async def retry_now(self, destination: str) -> int:
        now = self._clock()
        changed = await self.write(lambda conn: retry_now(conn, destination, now), relaxed=True)
        if changed:
            self._wakeups[destination].set()
        return changed

    async def expire(self, destination: str, reason: str = "expired") -> int:
        now = self._clock()
        return await self.write(lambda conn: expire(conn, destination, reason, now),
                                relaxed=True)  # a sweep lost to a power cut reruns

    async def next_due(self, destination: str) -> float | None:
        return await self._report(lambda conn: reports.next_due(conn, destination))

    # -- dead letters --------------------------------------------------------------------------
    async def dead_letters(self, selection: DeadLetterFilter, limit: int) -> list[DeadLetter]:
        return await self._report(lambda conn: reports.dead_letters(conn, selection, limit))

    async def replay(self, selection: DeadLetterFilter) -> int:
        sql, params = replay_query(selection, self._clock(), table="exceptions")
        replayed = await self.write(lambda conn: int(conn.execute(sql, params).rowcount))
        for name in [selection.destination] if selection.destination else list(self._wakeups):
            self._wakeups[name].set()
        return replayed

    # -- reports -------------------------------------------------------------------------------
    async def counts(self) -> dict[tuple[str, str], int]:
        return await self._report(reports.counts)

    async def open_counts(self) -> dict[tuple[str, str], int]:
        return await self._report(reports.open_counts)

    async def queue_depth(self, at_most: int | None = None) -> QueueDepth:
        """Counted from the cursors' totals and the open exception rows: never a scan of the
        queue, so `at_most` only caps the answer."""
        def depth(conn: sqlite3.Connection) -> QueueDepth:
            size = _store_size(conn)
            rows = reports.queue_depth(conn)
            return QueueDepth(rows if at_most is None else min(rows, at_most), *size)

        return await self._report(depth)

    async def store_size(self) -> StoreSize:
        return await self._report(_store_size)

    async def oldest_pending(self) -> dict[str, float]:
        return await self._report(reports.oldest_pending)

    async def rows(self, *, state: str | None = None, limit: int | None = None,
                   newest_first: bool = False) -> list[OutboxRow]:
        return await self._report(lambda conn: reports.rows(conn, state, limit, newest_first))

    async def changes(self, *, after_id: int, since: float, limit: int) -> list[OutboxRow]:
        return await self._report(lambda conn: reports.changes(conn, after_id, since, limit))

    async def drops(self, since: float = 0.0) -> list[DropCount]:
        found = await self._report(lambda conn: conn.execute(
            "SELECT hour, rule, source, event_name, count FROM drops WHERE hour > ? - 3600 "
            "ORDER BY hour, rule, source, event_name", (since,)).fetchall())
        return [DropCount(int(hour), rule, source, name, int(count))
                for hour, rule, source, name, count in found]

    # -- upkeep and life cycle -----------------------------------------------------------------
    async def prune(self, older_than: float, dedup_older_than: float | None = None,
                    chunk: int = 5000) -> int:
        """Merge the done batches (batches.merge_done), then delete finished events before the
        cut in chunks (ingest never waits behind one long transaction), on the relay's
        connection: a prune lost to a power cut is done again."""
        await self.write(partial(merge_done, now=self._clock()), relaxed=True)
        total, after, more = 0, 0, True
        while more:
            deleted, after, more = await self.write(
                partial(prune_chunk, after=after, older_than=older_than, chunk=chunk),
                relaxed=True)
            total += deleted
        await self.write(lambda conn: conn.execute(
            "DELETE FROM drops WHERE hour < ? - 3600", (older_than,)), relaxed=True)
        if dedup_older_than is not None:
            while await self.write(lambda conn: int(conn.execute(
                    _STALE_KEYS, (dedup_older_than, chunk)).rowcount), relaxed=True) >= chunk:
                pass
        return total

    async def write_problem(self) -> str | None:
        """None when a transaction that writes can commit now, else why not (readiness): one
        row rewritten on the ingest connection, probes asked for meanwhile sharing it."""
        if self._closed:
            return "the outbox is closing"
        return await self._readiness.problem()


def _store_size(conn: sqlite3.Connection) -> StoreSize:
    [(pages,)] = conn.execute("PRAGMA page_count").fetchall()
    [(page_size,)] = conn.execute("PRAGMA page_size").fetchall()
    return StoreSize(int(pages) * int(page_size), last_row_id(conn))


