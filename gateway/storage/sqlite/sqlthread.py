"""A SQLite connection on its own thread, where a whole transaction is one call.

The outbox's write transactions are plain functions of a `sqlite3.Connection`, run on the
connection's thread in one hop. aiosqlite (kept for the reports connection) hops to its thread
once per statement; under load each hop back waits for the GIL, and the outbox's write lock was
held across all of them: a five-statement commit took milliseconds and stalled every hit
queued behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

__all__ = ["SqliteThread"]

T = TypeVar("T")


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE takes the write
    # lock up front, so a transaction never fails half-way for want of it).
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
    except BaseException:
        conn.close()
        raise
    return conn


def _in_transaction(fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.commit()
    except BaseException:
        # Also when COMMIT itself failed (disk full, I/O error): SQLite may leave the
        # transaction open, and an open one would hold the write lock and refuse every BEGIN.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
        raise
    return result


class SqliteThread:
    """One connection, used only from its one thread."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._executor = executor

    @classmethod
    async def open(cls, path: Path, *, synchronous: str, name: str) -> SqliteThread:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outbox-{name}")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(
                executor, _connect, path, synchronous)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Call `fn(connection)` on the connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._conn)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Call `fn(connection)` inside BEGIN IMMEDIATE .. COMMIT (rolled back if it raises)."""
        return await self.run(partial(_in_transaction, fn))

    async def close(self) -> None:
        """Close the connection once the calls already queued have run."""
        await self.run(sqlite3.Connection.close)
        self._executor.shutdown(wait=True)
