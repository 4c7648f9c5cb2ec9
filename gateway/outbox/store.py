"""The outbox store: group-committed writes, leased claims, fenced acknowledgements.

Ingest calls `enqueue`, which returns once a transaction holding the rows has committed. Writes
are grouped: rows arriving within `commit_interval` share one transaction (and one fsync), so
durability does not cost throughput. Relay workers `claim` due rows under a lease; the claim also
sets aside rows that expired or that duplicate an event already sent (see schema.py for states).
One connection serves everything; an asyncio lock keeps each transaction whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from ..errors import OutboxUnavailable
from .queries import OutboxQueries
from .schema import SCHEMA, SCHEMA_VERSION

__all__ = ["Claim", "ClaimedRow", "Outbox", "OutboxEntry"]

log = logging.getLogger(__name__)

_INSERT = """
INSERT INTO outbox (destination, pixel_id, test_event_code, event_name, event_id, event_time,
                    expires_at, payload, state, created_at, available_at, updated_at,
                    last_error, rule_set)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_CLAIM = """
UPDATE outbox SET state = 'inflight', available_at = ?, updated_at = ?
WHERE id IN (
    SELECT id FROM outbox
    WHERE destination = ? AND state IN ('pending', 'inflight') AND available_at <= ?
    ORDER BY available_at LIMIT ?
)
RETURNING id, pixel_id, test_event_code, event_name, event_id, payload, attempts, available_at,
          expires_at
"""
# Every acknowledgement is fenced by the claim's lease: a claim that outlived its lease (and may
# have been re-claimed by another attempt) cannot overwrite a newer outcome.
_FENCE = " WHERE id = ? AND state = 'inflight' AND available_at = ?"
_KEEP_OWNER = """
INSERT INTO dedup (destination, pixel_id, event_name, event_id, row_id, seen_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (destination, pixel_id, event_name, event_id) DO UPDATE
SET row_id = excluded.row_id, seen_at = excluded.seen_at
WHERE dedup.seen_at < ?
"""


@dataclass(frozen=True)
class OutboxEntry:
    """A row to write: the event as it will be relayed to one destination."""

    destination: str
    pixel_id: str
    test_event_code: str
    event_name: str
    event_id: str
    event_time: int
    payload: bytes  # the CAPI event as JSON
    expires_at: float = float("inf")
    state: str = "pending"
    note: str | None = None
    rule_set: str = ""


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    pixel_id: str
    test_event_code: str
    event_name: str
    event_id: str
    payload: bytes
    attempts: int
    lease: float  # the claim's lease expiry: fences acknowledgements
    expires_at: float = float("inf")


@dataclass
class Claim:
    """Rows to send, and how many were set aside instead."""

    rows: list[ClaimedRow] = field(default_factory=list)
    expired: int = 0
    duplicates: int = 0


class Outbox(OutboxQueries):
    """Durable queue of events per destination on one SQLite file (WAL)."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        *,
        commit_interval: float,
        lease_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self._db = db
        self._commit_interval = commit_interval
        self._lease = lease_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._pending: list[tuple[Sequence[OutboxEntry], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._wakeups: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._closed = False
        self.commits = 0  # transactions that stored ingested rows (group commit at work)

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        commit_interval: float = 0.002,
        lease_seconds: float = 30.0,
        synchronous: str = "FULL",
        clock: Callable[[], float] = time.time,
    ) -> Outbox:
        """Open (creating if needed) the outbox file and its schema."""
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={synchronous}")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.executescript(SCHEMA)
            await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            await db.commit()
        except BaseException:
            await db.close()
            raise
        return cls(db, commit_interval=commit_interval, lease_seconds=lease_seconds, clock=clock)

    async def close(self) -> None:
        """Commit whatever is waiting, let a running transaction end, then close the file."""
        self._closed = True
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        async with self._lock:
            await self._db.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for one whole transaction (committed on exit, rolled back on error)."""
        async with self._lock:
            try:
                yield self._db
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for reads that must not interleave with a transaction."""
        async with self._lock:
            yield self._db

    # -- ingest side --------------------------------------------------------------------------
    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        """Return once `entries` are committed; OutboxUnavailable if they could not be."""
        if self._closed:
            raise OutboxUnavailable("the outbox is closing")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entries, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            if self._commit_interval > 0 and not self._closed:
                await asyncio.sleep(self._commit_interval)
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write(batch)
        finally:
            self._flusher = None

    async def _write(self, batch: list[tuple[Sequence[OutboxEntry], asyncio.Future[None]]]) -> None:
        error = await self._insert([entries for entries, _ in batch])
        if error is not None and len(batch) > 1:
            # One bad request must not sink the others that shared its transaction.
            for entries, done in batch:
                self._settle([(entries, done)], await self._insert([entries]))
            return
        self._settle(batch, error)

    async def _insert(self, groups: list[Sequence[OutboxEntry]]) -> BaseException | None:
        """Insert all rows in one transaction; return the error instead of raising."""
        now = self._clock()
        rows = [
            (e.destination, e.pixel_id, e.test_event_code, e.event_name, e.event_id,
             e.event_time, e.expires_at, e.payload, e.state, now, now, now, e.note, e.rule_set)
            for entries in groups for e in entries
        ]
        async with self._lock:
            try:
                await self._db.executemany(_INSERT, rows)
                await self._db.commit()
            except Exception as exc:  # disk full, I/O error, bad row: refuse, never half-write
                log.error("outbox commit failed: %s", exc)
                with contextlib.suppress(Exception):
                    await self._db.rollback()
                return exc
        self.commits += 1
        return None

    def _settle(
        self, batch: list[tuple[Sequence[OutboxEntry], asyncio.Future[None]]],
        error: BaseException | None,
    ) -> None:
        for _, done in batch:
            if done.done():
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(OutboxUnavailable("the outbox could not commit"))
        if error is None:
            for name in {e.destination for entries, _ in batch for e in entries}:
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
        expired_reason: str = "expired",
    ) -> Claim:
        """Lease up to `limit` due rows of `destination`, oldest first.

        In the same transaction, rows past their expiry become dead letters, and rows whose
        (pixel, event_name, event_id) another row of this destination already claimed within
        `dedup_seconds` become `duplicate`.
        """
        now = self._clock()
        async with self.transaction() as db:
            raw = await db.execute_fetchall(_CLAIM, (now + self._lease, now, destination, now,
                                                     limit))
            rows = sorted((ClaimedRow(*row) for row in raw), key=lambda row: row.id)
            expired = [row for row in rows if row.expires_at < now]
            if expired:
                await db.executemany(
                    "UPDATE outbox SET state = 'dead', reason = ?, updated_at = ?, "
                    "last_error = 'past Meta''s time window for this event' WHERE id = ?",
                    [(expired_reason, now, row.id) for row in expired],
                )
            live = [row for row in rows if row.expires_at >= now]
            duplicates = await self._set_aside_duplicates(db, destination, live, now,
                                                          dedup_seconds)
        kept = [row for row in live if row.id not in duplicates]
        return Claim(rows=kept, expired=len(expired), duplicates=len(duplicates))

    @staticmethod
    async def _set_aside_duplicates(
        db: aiosqlite.Connection, destination: str, rows: list[ClaimedRow], now: float,
        window: float,
    ) -> set[int]:
        """Record each row as the owner of its key unless a recent owner exists; return the
        ids of rows that lost to an earlier owner."""
        if window <= 0 or not rows:
            return set()
        await db.executemany(_KEEP_OWNER, [
            (destination, r.pixel_id, r.event_name, r.event_id, r.id, now, now - window)
            for r in rows
        ])
        ids = sorted({r.event_id for r in rows})
        owners: dict[tuple[str, str, str], int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            found = await db.execute_fetchall(
                "SELECT pixel_id, event_name, event_id, row_id FROM dedup WHERE destination = ? "
                f"AND event_id IN ({','.join('?' * len(chunk))})",
                (destination, *chunk),
            )
            owners.update({(p, n, e): owner for p, n, e, owner in found})
        losers = {r.id: owners[(r.pixel_id, r.event_name, r.event_id)] for r in rows
                  if owners.get((r.pixel_id, r.event_name, r.event_id), r.id) != r.id}
        if losers:
            await db.executemany(
                "UPDATE outbox SET state = 'duplicate', updated_at = ?, last_error = ? "
                "WHERE id = ?",
                [(now, f"duplicate of row {owner}", row_id) for row_id, owner in losers.items()],
            )
        return set(losers)

    async def finish(self, rows: Sequence[ClaimedRow], state: str = "delivered") -> int:
        """Mark claimed rows delivered (or dry_run); return how many were still ours."""
        now = self._clock()
        return await self._update(
            "UPDATE outbox SET state = ?, updated_at = ?, attempts = attempts + 1, "
            "last_error = NULL" + _FENCE,
            [(state, now, row.id, row.lease) for row in rows],
        )

    async def retry_later(self, rows: Sequence[ClaimedRow], delay: float, error: str) -> int:
        """Put claimed rows back, due again after `delay` seconds, remembering why."""
        now = self._clock()
        return await self._update(
            "UPDATE outbox SET state = 'pending', available_at = ?, updated_at = ?, "
            "attempts = attempts + 1, last_error = ?" + _FENCE,
            [(now + delay, now, error, row.id, row.lease) for row in rows],
        )

    async def release(self, rows: Sequence[ClaimedRow], delay: float = 0.0) -> int:
        """Give claimed rows back untried (shutdown, paused destination)."""
        now = self._clock()
        return await self._update(
            "UPDATE outbox SET state = 'pending', available_at = ?, updated_at = ?" + _FENCE,
            [(now + delay, now, row.id, row.lease) for row in rows],
        )

    async def dead_letter(
        self, rows: Sequence[ClaimedRow], reason: str, error: str, fbtrace_id: str | None
    ) -> int:
        """Claimed rows that will never be accepted as they are: keep them with the reason."""
        now = self._clock()
        return await self._update(
            "UPDATE outbox SET state = 'dead', reason = ?, last_error = ?, fbtrace_id = ?, "
            "updated_at = ?, attempts = attempts + 1" + _FENCE,
            [(reason, error, fbtrace_id, now, row.id, row.lease) for row in rows],
        )

    async def expire(self, destination: str, reason: str = "expired") -> int:
        """Dead-letter queued rows of `destination` past their expiry (a paused destination
        claims nothing, so its rows age out here)."""
        now = self._clock()
        async with self.transaction() as db:
            cursor = await db.execute(
                "UPDATE outbox SET state = 'dead', reason = ?, updated_at = ?, "
                "last_error = 'past Meta''s time window for this event' "
                "WHERE destination = ? AND state IN ('pending', 'inflight') AND expires_at < ?",
                (reason, now, destination, now),
            )
        return cursor.rowcount

    async def _update(self, sql: str, rows: list[tuple[object, ...]]) -> int:
        async with self.transaction() as db:
            before = db.total_changes
            await db.executemany(sql, rows)
            return db.total_changes - before

    async def writable(self) -> bool:
        """True when a write transaction can be taken now (readiness)."""
        try:
            async with self._lock:
                await self._db.execute("BEGIN IMMEDIATE")
                await self._db.rollback()
        except Exception as exc:
            log.warning("outbox is not writable: %s", exc)
            return False
        return not self._closed
