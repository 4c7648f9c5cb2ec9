"""The whole gateway's view on the PostgreSQL outbox: process reports, live-event watchers and
the ring of live events (schema migration 3). The tables are UNLOGGED (no WAL: all of it is
rewritten within seconds, and a crash that empties them loses nothing); live event ids come from
an ordinary sequence, so they never go back after a crash. Adding live events NOTIFYs every
node, whose readers then look at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from ..types import LiveEvent, ProcessReport
from .connection import Pool
from .schema import LIVE_CHANNEL

__all__ = ["WholeQueries"]

_PUT_REPORT = """
INSERT INTO process_reports (process, started_at, seen_at, report) VALUES ($1, $2, $3, $4)
ON CONFLICT (process) DO UPDATE SET started_at = excluded.started_at,
    seen_at = excluded.seen_at, report = excluded.report
"""
_WATCH = """
INSERT INTO live_watchers (process, until) VALUES ($1, $2)
ON CONFLICT (process) DO UPDATE SET until = excluded.until
"""
_ADD_EVENTS = """
WITH added AS (
    INSERT INTO live_events (added_at, process, event)
    SELECT $1, $2, event FROM unnest($3::bytea[]) AS event
    RETURNING id
)
SELECT MAX(id) FROM added
"""
# The ring: the newest rows by id, and those added recently (the age trim reads from the oldest
# id up to the first row young enough: only the rows it deletes).
_TRIM_ROWS = "DELETE FROM live_events WHERE id <= $1::bigint - $2::bigint"
_TRIM_AGE = ("DELETE FROM live_events WHERE id < (SELECT id FROM live_events WHERE added_at >= $1"
             " ORDER BY id LIMIT 1)")
_LAST_EVENT = ("SELECT CASE WHEN is_called THEN last_value ELSE 0 END"
               " FROM live_events_id_seq")


class WholeQueries:
    """The whole gateway's methods of the Outbox protocol; the store provides the pool, the
    clock and the wake-up event (set by its listening connection too)."""

    _pool: Pool
    _clock: Callable[[], float]
    _live: asyncio.Event

    async def put_report(self, process: str, started_at: float, report: bytes, *,
                         forget_before: float) -> None:
        async with self._pool.transaction() as conn:
            await conn.execute(_PUT_REPORT, process, started_at, self._clock(), report)
            await conn.execute("DELETE FROM process_reports WHERE seen_at < $1", forget_before)

    async def reports(self) -> list[ProcessReport]:
        async with self._pool.connection() as conn:
            found = await conn.fetch("SELECT process, started_at, seen_at, report"
                                     " FROM process_reports ORDER BY process")
        return [ProcessReport(row[0], float(row[1]), float(row[2]), bytes(row[3]))
                for row in found]

    async def watch(self, process: str, until: float) -> None:
        async with self._pool.transaction() as conn:
            await conn.execute(_WATCH, process, until)
            await conn.execute("DELETE FROM live_watchers WHERE until <= $1", self._clock())

    async def watchers(self) -> dict[str, float]:
        async with self._pool.connection() as conn:
            found = await conn.fetch("SELECT process, until FROM live_watchers WHERE until > $1",
                                     self._clock())
        return {row[0]: float(row[1]) for row in found}

    async def add_live_events(self, process: str, events: Sequence[bytes], *, keep_rows: int,
                              keep_seconds: float) -> None:
        if not events:
            return
        now = self._clock()
        async with self._pool.transaction() as conn:
            last = await conn.fetchval(_ADD_EVENTS, now, process, list(events))
            await conn.execute(_TRIM_ROWS, last, keep_rows)
            await conn.execute(_TRIM_AGE, now - keep_seconds)
            await conn.execute("SELECT pg_notify($1, '')", LIVE_CHANNEL)
        self._live.set()

    async def live_events(self, after_id: int, limit: int) -> list[LiveEvent]:
        async with self._pool.connection() as conn:
            found = await conn.fetch("SELECT id, process, event FROM live_events WHERE id > $1"
                                     " ORDER BY id LIMIT $2", after_id, limit)
        return [LiveEvent(int(row[0]), row[1], bytes(row[2])) for row in found]

    async def last_live_event(self) -> int:
        async with self._pool.connection() as conn:
            return int(await conn.fetchval(_LAST_EVENT))

    def live_wakeup(self) -> asyncio.Event:
        return self._live

    def _live_notified(self, _conn: object, _pid: int, _channel: str, _payload: str) -> None:
        self._live.set()
