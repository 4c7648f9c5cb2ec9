"""The SQLite outbox: group-committed writes, leased claims, fenced acknowledgements.

Ingest calls `enqueue`, which returns once a transaction holding the rows has committed. Writes
are grouped: rows arriving while a commit runs (or within `commit_interval`) share the next
transaction (and its fsync), so durability does not cost throughput. Relay workers `claim` due
rows under a lease; the claim also sets aside rows that expired or that duplicate an event
already sent (see ..types for states). Every write transaction is one function run on its
connection's thread (sqlthread.py); an asyncio lock lets one run at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import groupby
from pathlib import Path
from typing import TypeVar

import aiosqlite
import orjson

from ..groupcommit import DROPS_INTERVAL, GroupCommitted
from ..readiness import SharedProbe
from ..types import Claim, ClaimedRow, OutboxEntry
from .consolerecords import SqliteConsoleRecords
from .dedup import set_aside_duplicates
from .queries import OutboxQueries
from .schema import LAST_ID, QUEUED, SCHEMA_VERSION, migrate, user_version
from .sqlfile import SqliteFile
from .whole import WholeQueries

__all__ = ["SqliteOutbox"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_INSERT = """
INSERT INTO outbox (id, destination, pixel_id, test_event_code, event_name, event_id,
                    event_time, expires_at, state, created_at, available_at, updated_at,
                    last_error, rule_set, request_fields)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_CLAIM = f"""
UPDATE outbox SET state = 'inflight', available_at = ?, updated_at = ?
WHERE id IN (
    SELECT id FROM outbox
    WHERE destination = ? AND {QUEUED} AND available_at <= ?
    ORDER BY available_at LIMIT ?
)
RETURNING id, pixel_id, test_event_code, event_name, event_id, attempts, available_at,
          expires_at, request_fields,
          (SELECT payload FROM payloads WHERE payloads.id = outbox.id),
          (SELECT context FROM payloads WHERE payloads.id = outbox.id)
"""
# Row sets travel as one JSON array per statement (json_each), not one statement per row:
# several times faster for batches of a thousand.
_IDS = "id IN (SELECT value FROM json_each(?))"
# Every acknowledgement is fenced by the claim's lease: a claim that outlived its lease (and may
# have been re-claimed by another attempt) cannot overwrite a newer outcome.
_FENCE = (" WHERE state = 'inflight' AND available_at = :lease"
          " AND id IN (SELECT value FROM json_each(:ids))")
_DEAD = "UPDATE outbox SET state = 'dead', reason = ?, updated_at = ?, last_error = ? WHERE "
# Written with the due-index's own condition ({QUEUED}) so that SQLite uses it.
_RETRY_NOW = (f"UPDATE outbox SET available_at = ? WHERE destination = ? AND {QUEUED} "
              "AND state = 'pending' AND available_at > ?")
_EXPIRED_ERROR = "past the platform's time window for this event"


def _lease(row: ClaimedRow) -> float:
    return row.lease


def _ids(rows: Sequence[ClaimedRow] | Sequence[int]) -> str:
    """A JSON array of row ids, for json_each."""
    return orjson.dumps([row if isinstance(row, int) else row.id for row in rows]).decode()


def _insert_rows(conn: sqlite3.Connection, entries: list[OutboxEntry], now: float) -> None:
    """A group commit's rows: one outbox row and one payloads row per entry."""
    # Ids are assigned here so the payloads table can share them; the write lock
    # (BEGIN IMMEDIATE) keeps them ours even with other processes on the file.
    [(last,)] = conn.execute(LAST_ID).fetchall()
    first = int(last) + 1
    conn.executemany(_INSERT, [
        (first + n, e.destination, e.pixel_id, e.test_event_code, e.event_name, e.event_id,
         e.event_time, e.expires_at, e.state, now, now, now, e.note, e.rule_set,
         e.request_fields)
        for n, e in enumerate(entries)
    ])
    conn.executemany("INSERT INTO payloads (id, payload, context) VALUES (?, ?, ?)",
                     [(first + n, e.payload, e.context) for n, e in enumerate(entries)])


class SqliteOutbox(GroupCommitted, OutboxQueries, SqliteConsoleRecords, WholeQueries):
    """Durable queue of events per destination on one SQLite file (WAL)."""

    def __init__(
        self,
        file: SqliteFile,
        *,
        commit_interval: float,
        lease_seconds: float,
        clock: Callable[[], float],
        version: int = SCHEMA_VERSION,
        drops_interval: float = DROPS_INTERVAL,
    ) -> None:
        self._file = file
        self._lease = lease_seconds
        self._clock = clock
        self._wakeups: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._live = asyncio.Event()  # live events added here (whole.py)
        self._closed = False
        # Older than SCHEMA_VERSION only for a file opened for inspection (never migrated)
        self._version = version
        self._group = file.group_commit(_insert_rows, interval=commit_interval, clock=clock,
                                        committed=self._wake, drops_interval=drops_interval)
        self._readiness = SharedProbe(file.write_probe)

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        commit_interval: float = 0.002,
        lease_seconds: float = 30.0,
        synchronous: str = "FULL",
        clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> SqliteOutbox:
        """Open (creating if needed) the outbox file and its schema, migrated to this version.

        `create=False`: open an existing file as it is, for inspection (the CLI); the caller
        checks it exists."""
        file, version = await SqliteFile.open(path, synchronous=synchronous, create=create,
                                              prepare=_prepare if create else user_version)
        return cls(file, commit_interval=commit_interval, lease_seconds=lease_seconds,
                   clock=clock, version=version)

    async def _close(self) -> None:
        self._closed = True
        await self._group.close()
        await self._file.close()

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, relaxed: bool = False) -> T:
        """Run `fn(connection)` as one transaction (see SqliteFile.write: `relaxed` is relay
        bookkeeping, without fsync)."""
        return await self._file.write(fn, relaxed=relaxed)

    def read(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        """A connection for reads (see SqliteFile.read)."""
        return self._file.read()

    # -- ingest side: the group commit (SqliteFile.group_commit, _insert_rows) -----------------
    def _wake(self, destinations: set[str]) -> None:
        for name in destinations:
            self._wakeups[name].set()

    # -- relay side ---------------------------------------------------------------------------
    def wakeup(self, destination: str) -> asyncio.Event:
        """An event set whenever new rows for `destination` are committed."""
        return self._wakeups[destination]

    def destinations(self) -> list[str]:
        """Destinations that have a relay worker waiting on them."""
        return list(self._wakeups)

    async def claim(
        self,
        destination: str,
        limit: int,
        *,
        dedup_seconds: float = 0.0,
    ) -> Claim:
        """Lease up to `limit` due rows of `destination`, oldest first.

        In the same transaction, rows past their expiry become dead letters, and rows whose
        (pixel, event_name, event_id) another row of this destination already claimed within
        `dedup_seconds` become `duplicate`.
        """
        now = self._clock()

        def claim(conn: sqlite3.Connection) -> Claim:
            raw = conn.execute(_CLAIM, (now + self._lease, now, destination, now, limit))
            rows = sorted(raw.fetchall(), key=lambda row: row[0])
            expired = [row for row in rows if row[7] < now]
            if expired:
                conn.execute(_DEAD + _IDS, ("expired", now, _EXPIRED_ERROR,
                                            _ids([row[0] for row in expired])))
            live = [row for row in rows if row[7] >= now]
            # Only a hand-edited or damaged file lacks an event's JSON; such a row must not
            # hold back every batch it lands in.
            broken = [row[0] for row in live if row[9] is None]
            if broken:
                conn.execute(_DEAD + _IDS, ("invalid", now, "the event JSON is missing from the "
                                            "payloads table", _ids(broken)))
                live = [row for row in live if row[9] is not None]
            duplicates = set_aside_duplicates(conn, destination, live, now, dedup_seconds)
            return Claim(
                rows=[ClaimedRow(*row) for row in live if row[0] not in duplicates],
                expired=len(expired), duplicates=len(duplicates), broken=len(broken),
            )

        return await self._file.claim(claim, self.release)

    async def finish(self, rows: Sequence[ClaimedRow], state: str = "delivered") -> int:
        """Mark claimed rows delivered (or dry_run); return how many were still ours."""
        return await self._acknowledge(
            rows, "state = :state, updated_at = :now, attempts = attempts + 1, "
            "last_error = NULL", state=state,
        )

    async def retry_later(self, rows: Sequence[ClaimedRow], delay: float, error: str) -> int:
        """Put claimed rows back, due again after `delay` seconds, remembering why."""
        return await self._acknowledge(
            rows, "state = 'pending', available_at = :now + :delay, updated_at = :now, "
            "attempts = attempts + 1, last_error = :error", delay=delay, error=error,
        )

    async def release(self, rows: Sequence[ClaimedRow]) -> int:
        """Give claimed rows back untried (shutdown, paused destination)."""
        return await self._acknowledge(
            rows, "state = 'pending', available_at = :now, updated_at = :now")

    async def dead_letter(
        self, rows: Sequence[ClaimedRow], reason: str, error: str, fbtrace_id: str | None
    ) -> int:
        """Claimed rows that will never be accepted as they are: keep them with the reason."""
        return await self._acknowledge(
            rows, "state = 'dead', reason = :reason, last_error = :error, "
            "fbtrace_id = :fbtrace_id, updated_at = :now, attempts = attempts + 1",
            reason=reason, error=error, fbtrace_id=fbtrace_id,
        )

    async def _acknowledge(
        self, rows: Sequence[ClaimedRow], assignments: str, **values: object
    ) -> int:
        """One fenced UPDATE per lease (rows of one claim share it); how many were ours."""
        if not rows:
            return 0
        sql = f"UPDATE outbox SET {assignments}{_FENCE}"
        now = self._clock()
        updates = [{**values, "now": now, "lease": lease, "ids": _ids(list(group))}
                   for lease, group in groupby(sorted(rows, key=_lease), key=_lease)]

        def acknowledge(conn: sqlite3.Connection) -> int:
            return sum(conn.execute(sql, params).rowcount for params in updates)

        return await self.write(acknowledge, relaxed=True)

    async def retry_now(self, destination: str) -> int:
        """Make the rows of `destination` waiting out a retry's backoff due now."""
        now = self._clock()

        def retry_now(conn: sqlite3.Connection) -> int:
            return conn.execute(_RETRY_NOW, (now, destination, now)).rowcount

        # On the relay's connection: lost to a power cut, the rows only wait out their backoff.
        changed = await self.write(retry_now, relaxed=True)
        if changed:
            self._wakeups[destination].set()
        return changed

    async def expire(self, destination: str, reason: str = "expired") -> int:
        """Dead-letter queued rows of `destination` past their expiry (a paused destination
        claims nothing, so its rows age out here)."""
        now = self._clock()

        def expire(conn: sqlite3.Connection) -> int:
            return conn.execute(
                _DEAD + f"destination = ? AND {QUEUED} AND expires_at < ?",
                (reason, now, _EXPIRED_ERROR, destination, now),
            ).rowcount

        return await self.write(expire, relaxed=True)  # a sweep lost to a power cut reruns

    async def write_problem(self) -> str | None:
        """None when a transaction that writes can commit now, else why not (readiness).

        The probe rewrites one row in its own short transaction on the ingest connection (as
        durable as a hit's commit; an empty transaction would commit on a full disk). Probes
        asked for while one runs share it: a burst of readiness checks is one write."""
        if self._closed:
            return "the outbox is closing"
        return await self._readiness.problem()


def _prepare(conn: sqlite3.Connection) -> int:
    migrate(conn)
    return user_version(conn)


