"""The durable outbox: one SQLite row per event x destination, committed before any 2xx.

Ingest calls `enqueue`, which returns once a transaction holding the rows has committed. Writes
are grouped: rows arriving within `commit_interval` share one transaction (and one fsync), so
durability does not cost throughput. Relay workers `claim` due rows under a lease, then mark them
`delivered` / `dry_run`, or put them back with `retry_later`. A claim whose worker died (crash,
kill -9) becomes due again when its lease expires, so delivery is at least once.

Row states: pending -> inflight -> delivered | dry_run (finished, pruned after retention);
inflight -> pending (retry); unrouted (no destination accepts the pixel) and invalid (fails
Meta's rules; `last_error` says why) are kept for inspection.
One connection serves everything; an asyncio lock keeps each transaction whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from .errors import OutboxUnavailable

__all__ = ["ClaimedRow", "Outbox", "OutboxEntry"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    pixel_id TEXT NOT NULL,
    test_event_code TEXT NOT NULL,
    event_name TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    available_at REAL NOT NULL,  -- pending: next attempt; inflight: lease expiry
    updated_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (destination, available_at)
    WHERE state IN ('pending', 'inflight');
CREATE INDEX IF NOT EXISTS outbox_finished ON outbox (updated_at)
    WHERE state IN ('delivered', 'dry_run', 'unrouted', 'invalid');
"""
_INSERT = """
INSERT INTO outbox (destination, pixel_id, test_event_code, event_name, event_id, event_time,
                    payload, state, created_at, available_at, updated_at, last_error)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_CLAIM = """
UPDATE outbox SET state = 'inflight', available_at = ?, updated_at = ?
WHERE id IN (
    SELECT id FROM outbox
    WHERE destination = ? AND state IN ('pending', 'inflight') AND available_at <= ?
    ORDER BY available_at LIMIT ?
)
RETURNING id, pixel_id, test_event_code, event_name, event_id, payload, attempts, available_at
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
    state: str = "pending"
    note: str | None = None


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


class Outbox:
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
            await db.executescript(_SCHEMA)
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
             e.event_time, e.payload, e.state, now, now, now, e.note)
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

    async def claim(self, destination: str, limit: int) -> list[ClaimedRow]:
        """Lease up to `limit` due rows of `destination`, oldest first."""
        now = self._clock()
        async with self._lock:
            rows = await self._db.execute_fetchall(
                _CLAIM, (now + self._lease, now, destination, now, limit)
            )
            await self._db.commit()
        claimed = [ClaimedRow(*row) for row in rows]
        claimed.sort(key=lambda row: row.id)
        return claimed

    # Every acknowledgement is fenced by the claim's lease: a claim that outlived its lease
    # (and may have been re-claimed by another attempt) cannot overwrite a newer outcome.
    _FENCE = " WHERE id = ? AND state = 'inflight' AND available_at = ?"

    async def finish(self, rows: Sequence[ClaimedRow], state: str = "delivered") -> int:
        """Mark claimed rows delivered (or dry_run); return how many were still ours."""
        now = self._clock()
        return await self._update(
            "UPDATE outbox SET state = ?, updated_at = ?, attempts = attempts + 1, "
            "last_error = NULL" + self._FENCE,
            [(state, now, row.id, row.lease) for row in rows],
        )

    async def retry_later(self, rows: Sequence[ClaimedRow], delay: float, error: str) -> int:
        """Put claimed rows back, due again after `delay` seconds, remembering why."""
        now = self._clock()
        return await self._update(
            "UPDATE outbox SET state = 'pending', available_at = ?, updated_at = ?, "
            "attempts = attempts + 1, last_error = ?" + self._FENCE,
            [(now + delay, now, error, row.id, row.lease) for row in rows],
        )

    async def release(self, rows: Sequence[ClaimedRow]) -> int:
        """Give claimed rows back untried (shutdown), due at once."""
        now = self._clock()
        return await self._update(
            "UPDATE outbox SET state = 'pending', available_at = ?, updated_at = ?" + self._FENCE,
            [(now, now, row.id, row.lease) for row in rows],
        )

    async def _update(self, sql: str, rows: list[tuple[object, ...]]) -> int:
        async with self._lock:
            before = self._db.total_changes
            await self._db.executemany(sql, rows)
            await self._db.commit()
            return self._db.total_changes - before

    async def next_due(self, destination: str) -> float | None:
        """When the earliest pending or leased row of `destination` falls due."""
        async with self._lock:
            rows = await self._db.execute_fetchall(
                "SELECT MIN(available_at) FROM outbox "
                "WHERE destination = ? AND state IN ('pending', 'inflight')",
                (destination,),
            )
        value = next(iter(rows))[0]
        return float(value) if value is not None else None

    # -- upkeep -------------------------------------------------------------------------------
    async def prune(self, older_than: float, chunk: int = 5000) -> int:
        """Delete finished rows last touched before `older_than`; return how many."""
        total = 0
        while True:
            async with self._lock:
                cursor = await self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state IN "
                    "('delivered', 'dry_run', 'unrouted', 'invalid') AND updated_at < ? LIMIT ?)",
                    (older_than, chunk),
                )
                await self._db.commit()
            total += cursor.rowcount
            if cursor.rowcount < chunk:
                return total

    async def counts(self) -> dict[tuple[str, str], int]:
        """Rows per (destination, state)."""
        async with self._lock:
            rows = await self._db.execute_fetchall(
                "SELECT destination, state, COUNT(*) FROM outbox GROUP BY destination, state"
            )
        return {(dest, state): count for dest, state, count in rows}

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
