"""Reads and upkeep on the SQLite outbox: due times, counts, queue depth, listings, pruning,
dead letters."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import aiosqlite

from ..types import DeadLetter, DeadLetterFilter, DropCount, OutboxRow, QueueDepth, StoreSize
from .deadletters import list_query, replay_query
from .schema import FINISHED, LAST_ID, QUEUED

__all__ = ["OutboxQueries"]

T = TypeVar("T")

_PRUNE_FINISHED = (f"DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE {FINISHED} "
                   "AND updated_at < ? LIMIT ?)")
_STALE_KEYS = ("DELETE FROM dedup WHERE (destination, pixel_id, event_name, event_id) IN "
               "(SELECT destination, pixel_id, event_name, event_id FROM dedup "
               "WHERE seen_at < ? LIMIT ?)")


_OLD_DROPS = "DELETE FROM drops WHERE hour < ? - 3600"

# For following: each branch reads one index (new ids, finished rows by updated_at, the
# queue, the dead letters), so a poll never reads the rows kept for inspection.
_CHANGED = f"""
SELECT id FROM outbox WHERE id > :after
UNION SELECT id FROM outbox WHERE {FINISHED} AND updated_at >= :since
UNION SELECT id FROM outbox WHERE {QUEUED} AND updated_at >= :since
UNION SELECT id FROM outbox WHERE state = 'dead' AND updated_at >= :since
"""

_OPEN_COUNTS = f"""
SELECT destination, state, COUNT(*) FROM outbox WHERE {QUEUED} GROUP BY destination, state
UNION ALL
SELECT destination, 'dead', COUNT(*) FROM outbox WHERE state = 'dead' GROUP BY destination
"""


_ROW_COLUMNS = ", ".join(f"outbox.{name}" for name in (
    "id", "destination", "state", "pixel_id", "test_event_code", "event_name", "event_id",
    "event_time", "expires_at", "attempts", "created_at", "updated_at", "available_at",
    "last_error", "reason", "fbtrace_id", "rule_set", "request_fields"))


def _row(fields: list[Any]) -> OutboxRow:
    payload, context = fields[-2:]
    fields[-2:] = [None if payload is None else bytes(payload), bytes(context or b"")]
    return OutboxRow(*fields)


class OutboxQueries:
    """Queries the store shares; the store provides the connection and the clock."""

    _clock: Callable[[], float]
    _version: int  # the file's schema version (older only for a file opened to inspect)

    def read(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, relaxed: bool = False) -> T:
        raise NotImplementedError

    def wakeup(self, destination: str) -> asyncio.Event:
        raise NotImplementedError

    def destinations(self) -> list[str]:
        raise NotImplementedError

    async def next_due(self, destination: str) -> float | None:
        """When the earliest pending or leased row of `destination` falls due."""
        async with self.read() as db:
            rows = await db.execute_fetchall(
                "SELECT MIN(available_at) FROM outbox "
                f"WHERE destination = ? AND {QUEUED}",
                (destination,),
            )
        value = next(iter(rows))[0]
        return float(value) if value is not None else None

    # -- upkeep -------------------------------------------------------------------------------
    async def prune(self, older_than: float, dedup_older_than: float | None = None,
                    chunk: int = 5000) -> int:
        """Delete finished rows last touched before `older_than` (and stale dedup keys)."""
        total = await self._delete_in_chunks(_PRUNE_FINISHED, older_than, chunk)
        if self._version >= 3:  # one row per hour and rule: no chunks needed
            await self.write(lambda conn: conn.execute(_OLD_DROPS, (older_than,)).rowcount,
                             relaxed=True)
        if dedup_older_than is not None:
            await self._delete_in_chunks(_STALE_KEYS, dedup_older_than, chunk)
        return total

    async def _delete_in_chunks(self, sql: str, older_than: float, chunk: int) -> int:
        """Chunks, so that ingest never waits behind one long transaction; on the relay's
        connection, as a prune lost to a power cut is simply done again."""
        total = 0
        while True:
            deleted = await self.write(
                lambda conn: conn.execute(sql, (older_than, chunk)).rowcount, relaxed=True)
            total += deleted
            if deleted < chunk:
                return total

    async def open_counts(self) -> dict[tuple[str, str], int]:
        """Rows per (destination, state) for the states still open: pending, inflight, dead.
        Read from the queue and dead-letter indexes, so its cost follows the backlog, not the
        finished rows kept for inspection (~0.7 s per million rows for a count of every row)."""
        async with self.read() as db:
            rows = await db.execute_fetchall(_OPEN_COUNTS)
        return {(dest, state): count for dest, state, count in rows}

    async def queue_depth(self, at_most: int | None = None) -> QueueDepth:
        """(rows waiting to be sent, counted up to `at_most`; bytes of the database file; the
        last row id), for backpressure. Counting reads the queue's index: ~0.25 s per million
        queued rows, hence the bound."""
        async with self.read() as db:
            size = await _store_size(db)  # first: rows written meanwhile are counted, not lost
            [(rows,)] = await db.execute_fetchall(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE {QUEUED} LIMIT ?)",
                (-1 if at_most is None else at_most,))
        return QueueDepth(int(rows), size.bytes, size.last_id)

    async def store_size(self) -> StoreSize:
        async with self.read() as db:
            return await _store_size(db)

    async def oldest_pending(self) -> dict[str, float]:
        """Per destination, the creation time of its oldest queued row."""
        async with self.read() as db:
            rows = await db.execute_fetchall(
                "SELECT destination, MIN(created_at) FROM outbox "
                f"WHERE {QUEUED} GROUP BY destination"
            )
        return {dest: float(created) for dest, created in rows}

    async def counts(self) -> dict[tuple[str, str], int]:
        """Rows per (destination, state), every state (a full scan: for a person, not polls)."""
        async with self.read() as db:
            rows = await db.execute_fetchall(
                "SELECT destination, state, COUNT(*) FROM outbox GROUP BY 1, 2 ORDER BY 1, 2")
        return {(dest, state): int(count) for dest, state, count in rows}

    async def rows(
        self, *, state: str | None = None, limit: int | None = None, newest_first: bool = False
    ) -> list[OutboxRow]:
        """Stored rows with their events (optionally of one state), by id."""
        query = self._row_query()
        params: list[object] = []
        if state is not None:
            query += " WHERE state = ?"
            params.append(state)
        query += f" ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT ?"
        params.append(-1 if limit is None else limit)
        async with self.read() as db:
            found = await db.execute_fetchall(query, params)
        return [_row(list(raw)) for raw in found]

    def _row_query(self) -> str:
        # A file of schema version 1, inspected without migrating it, has no context column.
        context = "payloads.context" if self._version >= 2 else "x''"
        return (f"SELECT {_ROW_COLUMNS}, payloads.payload, {context} FROM outbox "
                "LEFT JOIN payloads USING (id)")

    async def changes(self, *, after_id: int, since: float, limit: int) -> list[OutboxRow]:
        """Rows stored after `after_id` or changed at or after `since`, by change, then id."""
        query = (f"{self._row_query()} WHERE id IN ({_CHANGED}) "
                 "ORDER BY outbox.updated_at, id LIMIT :limit")
        async with self.read() as db:
            found = await db.execute_fetchall(
                query, {"after": after_id, "since": since, "limit": limit})
        return [_row(list(raw)) for raw in found]

    async def drops(self, since: float = 0.0) -> list[DropCount]:
        """Committed drop counts of the hours ending after `since`."""
        if self._version < 3:  # an older file, inspected: it counted none
            return []
        async with self.read() as db:
            found = await db.execute_fetchall(
                "SELECT hour, rule, source, event_name, count FROM drops WHERE hour > ? - 3600 "
                "ORDER BY hour, rule, source, event_name", (since,))
        return [DropCount(int(hour), rule, source, name, int(count))
                for hour, rule, source, name, count in found]

    async def dead_letters(self, selection: DeadLetterFilter, limit: int) -> list[DeadLetter]:
        sql, params = list_query(selection, limit)
        async with self.read() as db:
            rows = await db.execute_fetchall(sql, params)
        return [DeadLetter(*row) for row in rows]

    async def replay(self, selection: DeadLetterFilter) -> int:
        """Re-queue matching dead letters; return how many."""
        sql, params = replay_query(selection, self._clock())
        replayed = await self.write(lambda conn: conn.execute(sql, params).rowcount)
        for name in [selection.destination] if selection.destination else self.destinations():
            self.wakeup(name).set()
        return replayed


async def _store_size(db: aiosqlite.Connection) -> StoreSize:
    [(pages,)] = await db.execute_fetchall("PRAGMA page_count")
    [(page_size,)] = await db.execute_fetchall("PRAGMA page_size")
    [(last_id,)] = await db.execute_fetchall(LAST_ID)
    return StoreSize(int(pages) * int(page_size), int(last_id))
