"""One SQLite file as an outbox uses it, whatever its tables: a durable connection for ingest,
a relaxed one for relay bookkeeping, and a reader for reports, with the turns that let one write
transaction run at a time (turns.py); and what the engines' files share besides their rows: the
group commit with its drop counts, and the readiness probe. Shared by the SQLite engines
(`sqlite`, `sqlitelog`)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import aiosqlite

from ...errors import OutboxUnavailable
from ..groupcommit import Drops, GroupCommit
from ..types import Claim, ClaimedRow, OutboxEntry
from .schema import PROBE
from .sqlthread import SqliteThread
from .turns import WriteTurns

__all__ = ["InsertRows", "SqliteFile"]

T = TypeVar("T")
# An engine's rows for a group commit's entries, written inside its transaction at `now`.
InsertRows = Callable[[sqlite3.Connection, list[OutboxEntry], float], None]

_COUNT_DROPS = """
INSERT INTO drops (hour, rule, source, event_name, count) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (hour, rule, source, event_name) DO UPDATE SET count = count + excluded.count
"""


def _count_drops(conn: sqlite3.Connection, drops: Drops) -> None:
    if drops:
        conn.executemany(_COUNT_DROPS, [(*key, count) for key, count in drops.items()])


def _write_probe(conn: sqlite3.Connection) -> None:
    conn.execute(PROBE)


async def _connect_reader(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path)
    try:
        await db.execute("PRAGMA busy_timeout=5000")
    except BaseException:
        await db.close()
        raise
    return db


class SqliteFile:
    def __init__(self, db: SqliteThread, relay_db: SqliteThread,
                 read_db: aiosqlite.Connection) -> None:
        self._db = db  # ingest and everything that must survive a power cut
        self._relay_db = relay_db  # relay bookkeeping: no fsync (see write)
        # Reports (queue depth, status, metrics) read on their own connection: in WAL mode a
        # reader never blocks a writer, so a COUNT over a million rows cannot stall ingest.
        self._read_db = read_db
        self._read_lock = asyncio.Lock()
        self._turns = WriteTurns()

    @classmethod
    async def open(cls, path: Path, *, synchronous: str, create: bool,
                   prepare: Callable[[sqlite3.Connection], T]) -> tuple[SqliteFile, T]:
        """Open the file's connections; `prepare` (create or migrate the schema, read its
        version) runs first on the ingest connection, and its result is returned too.

        `create=False`: the caller checked that the file exists and it is not created."""
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        opened: list[SqliteThread] = []
        try:
            db = await SqliteThread.open(path, synchronous=synchronous, name="ingest")
            opened.append(db)
            prepared = await db.run(prepare)
            relay_db = await SqliteThread.open(path, synchronous="NORMAL", name="relay")
            opened.append(relay_db)
            read_db = await _connect_reader(path)
        except BaseException:
            for thread in opened:
                await thread.close()
            raise
        return cls(db, relay_db, read_db), prepared

    async def close(self) -> None:
        """Let a running transaction end, then close the connections."""
        async with self._read_lock:
            await self._read_db.close()
        async with self._turns.turn(durable=True):
            await self._relay_db.close()
            await self._db.close()

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, relaxed: bool = False) -> T:
        """Run `fn(connection)` as one transaction (committed, or rolled back if it raises).

        `relaxed`: relay bookkeeping (leases, acknowledgements) need not survive a power cut,
        since losing one only means sending an event again; it uses a second connection that
        does not fsync, and waits behind durable writes (turns.py). Both connections take
        turns, so they never wait on each other inside SQLite. A cancelled caller's
        transaction still runs to its end (commit or rollback) and holds the turn until then.
        What waiting may cure (a full disk, an I/O error, another process holding SQLite's
        lock too long) is raised as OutboxUnavailable.
        """
        async with self._turns.turn(durable=not relaxed):
            return await self._write_in_turn(fn, relaxed=relaxed)

    def group_commit(self, insert_rows: InsertRows, *, interval: float,
                     clock: Callable[[], float], committed: Callable[[set[str]], None],
                     drops_interval: float) -> GroupCommit:
        """Ingest's group commit on this file: the engine's rows (`insert_rows`) and the drop
        counts in one durable transaction, taken in the commit's turn (hits arriving while it
        waits for the turn ride in it); drop counts alone are relaxed (a count lost to a power
        cut is only a count)."""

        async def insert(entries: list[OutboxEntry], drops: Drops) -> None:
            now = clock()

            def transaction(conn: sqlite3.Connection) -> None:
                insert_rows(conn, entries, now)
                _count_drops(conn, drops)

            await self._write_in_turn(transaction)  # the group commit holds the turn

        return GroupCommit(
            interval=interval, clock=clock, insert=insert,
            insert_drops=lambda drops: self.write(partial(_count_drops, drops=drops),
                                                  relaxed=True),
            committed=committed, drops_interval=drops_interval,
            one_by_one=lambda exc: not isinstance(exc, OutboxUnavailable),
            turn=lambda: self._turns.turn(durable=True),
        )

    async def claim(self, fn: Callable[[sqlite3.Connection], Claim],
                    give_back: Callable[[Sequence[ClaimedRow]], Awaitable[object]]) -> Claim:
        """A claim's transaction `fn` (relay bookkeeping). It runs to its end even when its
        caller is cancelled (a shutdown): committed for a caller that is gone, it would keep
        its rows leased and unsent until the lease runs out, so `give_back` releases them."""
        call = asyncio.ensure_future(self.write(fn, relaxed=True))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            await asyncio.wait([call])
            if not call.cancelled() and call.exception() is None:
                await give_back(call.result().rows)
            raise

    async def write_probe(self) -> None:
        """Readiness: rewrite the probe's one row in a durable transaction of its own."""
        await self.write(_write_probe)

    async def _write_in_turn(self, fn: Callable[[sqlite3.Connection], T], *,
                             relaxed: bool = False) -> T:
        """`write` for a caller holding the turn."""
        db = self._relay_db if relaxed else self._db
        call = asyncio.ensure_future(db.transaction(fn))
        try:
            return await asyncio.shield(call)
        except sqlite3.OperationalError as exc:
            raise OutboxUnavailable(str(exc)) from exc
        except asyncio.CancelledError:
            # The transaction goes on in its thread: keep the turn until it has ended.
            await asyncio.wait([call])
            raise

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """A connection for reads (a consistent snapshot per statement; never blocks writes);
        errors waiting may cure raised as OutboxUnavailable, as in `write`."""
        async with self._read_lock:
            try:
                yield self._read_db
            except sqlite3.OperationalError as exc:
                raise OutboxUnavailable(str(exc)) from exc
