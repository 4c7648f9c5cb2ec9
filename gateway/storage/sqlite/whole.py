"""The whole gateway's view on the SQLite outbox: process reports, live-event watchers and the
ring of live events (schema migration 6). Every write is one short transaction on the relay's
connection (no fsync: all of it is rewritten within seconds, and losing it loses nothing)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

import aiosqlite

from ..types import LiveEvent, ProcessReport

__all__ = ["WholeQueries"]

T = TypeVar("T")

_PUT_REPORT = """
INSERT INTO process_reports (process, started_at, seen_at, report) VALUES (?, ?, ?, ?)
ON CONFLICT (process) DO UPDATE SET started_at = excluded.started_at,
    seen_at = excluded.seen_at, report = excluded.report
"""
_WATCH = """
INSERT INTO live_watchers (process, until) VALUES (?, ?)
ON CONFLICT (process) DO UPDATE SET until = excluded.until
"""
_ADD_EVENT = "INSERT INTO live_events (added_at, process, event) VALUES (?, ?, ?)"
_LAST_EVENT = ("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'live_events'),"
               " 0)")
# The ring: the newest rows by id, and those added recently. The age trim reads from the oldest
# id up to the first row young enough: only the rows it deletes.
_TRIM_ROWS = "DELETE FROM live_events WHERE id <= ?"
_TRIM_AGE = ("DELETE FROM live_events WHERE id < (SELECT id FROM live_events WHERE added_at >= ?"
             " ORDER BY id LIMIT 1)")


class WholeQueries:
    """The whole gateway's methods of the Outbox protocol; the store provides the connections,
    the clock and the wake-up event."""

    _clock: Callable[[], float]
    _live: asyncio.Event

    def read(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, relaxed: bool = False) -> T:
        raise NotImplementedError

    async def put_report(self, process: str, started_at: float, report: bytes, *,
                         forget_before: float) -> None:
        now = self._clock()

        def put(conn: sqlite3.Connection) -> None:
            conn.execute(_PUT_REPORT, (process, started_at, now, report))
            conn.execute("DELETE FROM process_reports WHERE seen_at < ?", (forget_before,))

        await self.write(put, relaxed=True)

    async def reports(self) -> list[ProcessReport]:
        async with self.read() as db:
            found = await db.execute_fetchall(
                "SELECT process, started_at, seen_at, report FROM process_reports"
                " ORDER BY process")
        return [ProcessReport(str(p), float(s), float(seen), bytes(r))
                for p, s, seen, r in found]

    async def watch(self, process: str, until: float) -> None:
        now = self._clock()

        def watch(conn: sqlite3.Connection) -> None:
            conn.execute(_WATCH, (process, until))
            conn.execute("DELETE FROM live_watchers WHERE until <= ?", (now,))

        await self.write(watch, relaxed=True)

    async def watchers(self) -> dict[str, float]:
        async with self.read() as db:
            found = await db.execute_fetchall(
                "SELECT process, until FROM live_watchers WHERE until > ?", (self._clock(),))
        return {str(process): float(until) for process, until in found}

    async def add_live_events(self, process: str, events: Sequence[bytes], *, keep_rows: int,
                              keep_seconds: float) -> None:
        if not events:
            return
        now = self._clock()

        def add(conn: sqlite3.Connection) -> None:
            conn.executemany(_ADD_EVENT, [(now, process, event) for event in events])
            [(last,)] = conn.execute(_LAST_EVENT).fetchall()
            conn.execute(_TRIM_ROWS, (int(last) - keep_rows,))
            conn.execute(_TRIM_AGE, (now - keep_seconds,))

        await self.write(add, relaxed=True)
        self._live.set()

    async def live_events(self, after_id: int, limit: int) -> list[LiveEvent]:
        async with self.read() as db:
            found = await db.execute_fetchall(
                "SELECT id, process, event FROM live_events WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit))
        return [LiveEvent(int(i), str(p), bytes(e)) for i, p, e in found]

    async def last_live_event(self) -> int:
        async with self.read() as db:
            [(last,)] = await db.execute_fetchall(_LAST_EVENT)
        return int(last)

    def live_wakeup(self) -> asyncio.Event:
        return self._live
