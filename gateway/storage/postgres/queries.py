"""Reads and upkeep on the PostgreSQL outbox: due times, counts, queue depth, listings,
following, dead letters, pruning.

Counts read the shared database: with several nodes they are the cluster's, not one node's.
Times are stored in the server's clock (clock.py) and handed in and out in the caller's.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from ..types import DeadLetter, DeadLetterFilter, DropCount, OutboxRow, QueueDepth, StoreSize
from .clock import ServerClock
from .connection import SCAN_TIMEOUT, Pool
from .schema import FINISHED, NOTIFY, QUEUED, TABLES

__all__ = ["PostgresQueries"]

_ROW_COLUMNS = ", ".join(f"outbox.{name}" for name in (
    "id", "destination", "state", "pixel_id", "test_event_code", "event_name", "event_id",
    "event_time", "expires_at", "attempts", "created_at", "updated_at", "available_at",
    "last_error", "reason", "fbtrace_id", "rule_set", "request_fields"))
_ROWS = (f"SELECT {_ROW_COLUMNS}, payloads.payload, COALESCE(payloads.context, ''::bytea)"
         " FROM outbox LEFT JOIN payloads USING (id)")

# For following: each branch reads one index (new ids, finished rows by updated_at, the
# queue, the dead letters), so a poll never reads the rows kept for inspection.
_CHANGED = f"""
SELECT id FROM outbox WHERE id > $1
UNION SELECT id FROM outbox WHERE {FINISHED} AND updated_at >= $2
UNION SELECT id FROM outbox WHERE {QUEUED} AND updated_at >= $2
UNION SELECT id FROM outbox WHERE state = 'dead' AND updated_at >= $2
"""
_OPEN_COUNTS = f"""
SELECT destination, state, COUNT(*) FROM outbox WHERE {QUEUED} GROUP BY destination, state
UNION ALL
SELECT destination, 'dead', COUNT(*) FROM outbox WHERE state = 'dead' GROUP BY destination
"""
_SIZE = " + ".join(f"pg_total_relation_size('{table}')" for table in TABLES)
# The sequence's last value counts ids of commits still running too (0 before the first row).
_LAST_ID = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_id_seq"

# Prune in chunks: each a short transaction, so neither ingest nor claims wait behind one
# long delete, and autovacuum (tuned per table in schema.py) reclaims the space as it goes.
_PRUNE_FINISHED = f"""
WITH gone AS (
    DELETE FROM outbox WHERE id IN (
        SELECT id FROM outbox WHERE {FINISHED} AND updated_at < $1 LIMIT $2)
    RETURNING id
), payloads_gone AS (
    DELETE FROM payloads USING gone WHERE payloads.id = gone.id
)
SELECT COUNT(*) FROM gone
"""
_STALE_KEYS = """
WITH gone AS (
    DELETE FROM dedup WHERE ctid IN (SELECT ctid FROM dedup WHERE seen_at < $1 LIMIT $2)
    RETURNING 1
)
SELECT COUNT(*) FROM gone
"""
_OLD_DROPS = "DELETE FROM drops WHERE hour < $1::float8 - 3600"

_DEAD_COLUMNS = ("id, destination, pixel_id, event_name, event_id, reason, last_error, "
                 "fbtrace_id, attempts, created_at, updated_at")


def _row(fields: Any, time: ServerClock) -> OutboxRow:
    row = OutboxRow(*fields)
    return replace(row, expires_at=time.to_local(row.expires_at),
                   created_at=time.to_local(row.created_at),
                   updated_at=time.to_local(row.updated_at),
                   available_at=time.to_local(row.available_at))


def _dead_where(selection: DeadLetterFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = ["state = 'dead'"]
    params: list[Any] = []
    if selection.destination:
        params.append(selection.destination)
        clauses.append(f"destination = ${len(params)}")
    if selection.reason:
        params.append(selection.reason)
        clauses.append(f"reason = ${len(params)}")
    if selection.ids:
        params.append(list(selection.ids))
        clauses.append(f"id = ANY(${len(params)}::bigint[])")
    return " AND ".join(clauses), params


class PostgresQueries:
    """Queries the store shares; the store provides the pool, the clock and the wake-ups."""

    _pool: Pool
    _time: ServerClock

    def wakeup(self, destination: str) -> asyncio.Event:
        raise NotImplementedError

    def destinations(self) -> list[str]:
        raise NotImplementedError

    async def _fetch(self, sql: str, *params: Any) -> list[Any]:
        """Reports: they may scan the queue (SCAN_TIMEOUT)."""
        async with self._pool.connection() as conn:
            return list(await conn.fetch(sql, *params, timeout=SCAN_TIMEOUT))

    async def _value(self, sql: str, *params: Any) -> Any:
        async with self._pool.connection() as conn:
            return await conn.fetchval(sql, *params)

    async def next_due(self, destination: str) -> float | None:
        value = await self._value(
            f"SELECT MIN(available_at) FROM outbox WHERE destination = $1 AND {QUEUED}",
            destination)
        return None if value is None else self._time.to_local(float(value))

    # -- upkeep -------------------------------------------------------------------------------
    async def prune(self, older_than: float, dedup_older_than: float | None = None,
                    chunk: int = 5000) -> int:
        """Delete finished rows last touched before `older_than`, drop counts of the hours
        ended by then, and stale dedup keys; return how many rows."""
        total = await self._delete_in_chunks(
            _PRUNE_FINISHED, self._time.to_server(older_than), chunk)
        async with self._pool.connection() as conn:
            await conn.execute(_OLD_DROPS, older_than)  # hours of the gateway's clock
        if dedup_older_than is not None:
            await self._delete_in_chunks(
                _STALE_KEYS, self._time.to_server(dedup_older_than), chunk)
        return total

    async def _delete_in_chunks(self, sql: str, older_than: float, chunk: int) -> int:
        total = 0
        while True:
            deleted = int(await self._value(sql, older_than, chunk))
            total += deleted
            if deleted < chunk:
                return total

    # -- reports ------------------------------------------------------------------------------
    async def open_counts(self) -> dict[tuple[str, str], int]:
        """Rows per (destination, state) for the open states, from the queue and dead-letter
        indexes (its cost follows the backlog, not the finished rows kept)."""
        return {(dest, state): int(count)
                for dest, state, count in await self._fetch(_OPEN_COUNTS)}

    async def queue_depth(self, at_most: int | None = None) -> QueueDepth:
        """(rows waiting to be sent, counted up to `at_most`; bytes of the outbox's tables
        with their indexes; the last row id), for backpressure."""
        async with self._pool.connection() as conn:
            size = await _store_size(conn)  # first: rows written meanwhile are counted
            rows = await conn.fetchval(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE {QUEUED} LIMIT $1) AS q",
                at_most, timeout=SCAN_TIMEOUT)
        return QueueDepth(int(rows), size.bytes, size.last_id)

    async def store_size(self) -> StoreSize:
        async with self._pool.connection() as conn:
            return await _store_size(conn)

    async def oldest_pending(self) -> dict[str, float]:
        found = await self._fetch("SELECT destination, MIN(created_at) FROM outbox "
                                  f"WHERE {QUEUED} GROUP BY destination")
        return {dest: self._time.to_local(float(created)) for dest, created in found}

    async def counts(self) -> dict[tuple[str, str], int]:
        """Rows per (destination, state), every state (a full scan: for a person, not polls)."""
        found = await self._fetch(
            "SELECT destination, state, COUNT(*) FROM outbox GROUP BY 1, 2"
            ' ORDER BY destination COLLATE "C", state COLLATE "C"')
        return {(dest, state): int(count) for dest, state, count in found}

    async def rows(
        self, *, state: str | None = None, limit: int | None = None, newest_first: bool = False
    ) -> list[OutboxRow]:
        order = f" ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT $1"
        if state is None:
            found = await self._fetch(_ROWS + order, limit)
        else:
            found = await self._fetch(_ROWS + " WHERE state = $2" + order, limit, state)
        return [_row(raw, self._time) for raw in found]

    async def changes(self, *, after_id: int, since: float, limit: int) -> list[OutboxRow]:
        found = await self._fetch(
            f"{_ROWS} WHERE id IN ({_CHANGED}) ORDER BY outbox.updated_at, id LIMIT $3",
            after_id, self._time.to_server(since), limit)
        return [_row(raw, self._time) for raw in found]

    async def drops(self, since: float = 0.0) -> list[DropCount]:
        found = await self._fetch(
            "SELECT hour, rule, source, event_name, count FROM drops"
            " WHERE hour > $1::float8 - 3600 ORDER BY hour, rule COLLATE \"C\","
            " source COLLATE \"C\", event_name COLLATE \"C\"", since)
        return [DropCount(int(hour), rule, source, name, int(count))
                for hour, rule, source, name, count in found]

    # -- dead letters -------------------------------------------------------------------------
    async def dead_letters(self, selection: DeadLetterFilter, limit: int) -> list[DeadLetter]:
        where, params = _dead_where(selection)
        found = await self._fetch(
            f"SELECT {_DEAD_COLUMNS} FROM outbox WHERE {where} ORDER BY id DESC"
            f" LIMIT ${len(params) + 1}", *params, limit)
        return [replace(letter, created_at=self._time.to_local(letter.created_at),
                        updated_at=self._time.to_local(letter.updated_at))
                for letter in (DeadLetter(*row) for row in found)]

    async def replay(self, selection: DeadLetterFilter) -> int:
        """Re-queue matching dead letters as if new; wake their destinations on every node."""
        where, params = _dead_where(selection)
        now = len(params) + 1
        sql = (f"UPDATE outbox SET state = 'pending', reason = NULL, attempts = 0, "
               f"available_at = ${now}, updated_at = ${now} WHERE {where} RETURNING destination")
        async with self._pool.transaction() as conn:
            replayed = [dest for (dest,) in await conn.fetch(sql, *params, self._time.now())]
            await conn.execute(NOTIFY, sorted(set(replayed)))
        for name in set(replayed):
            self.wakeup(name).set()
        return len(replayed)


async def _store_size(conn: Any) -> StoreSize:
    size, last_id = await conn.fetchrow(f"SELECT {_SIZE}, ({_LAST_ID})")
    return StoreSize(int(size), int(last_id))
