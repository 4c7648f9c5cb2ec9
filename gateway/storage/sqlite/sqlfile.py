"""One SQLite file as an outbox uses it, whatever its tables: a durable connection for ingest,
a relaxed one for relay bookkeeping, and a reader for reports, with the turns that let one write
transaction run at a time (turns.py). Shared by the SQLite engines (`sqlite`, `sqlitelog`)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import aiosqlite

from ...errors import OutboxUnavailable
from .sqlthread import SqliteThread
from .turns import WriteTurns

__all__ = ["SqliteFile"]

T = TypeVar("T")


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
        async with self.turn(durable=not relaxed):
            return await self.write_in_turn(fn, relaxed=relaxed)

    def turn(self, *, durable: bool = True) -> contextlib.AbstractAsyncContextManager[None]:
        """The turn to write, for a caller that decides what to write once it has it (the
        group commit: hits arriving while it waits join the batch); see write_in_turn."""
        return self._turns.turn(durable=durable)

    async def write_in_turn(self, fn: Callable[[sqlite3.Connection], T], *,
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
