"""The SQLite engine: one file in WAL mode, shared by the processes of one machine.

The only place that imports sqlite3 and aiosqlite. Rows other processes commit (another
`serve` worker, `dead-letters replay`) set no wake-up here: the relay finds them when it reads
`next_due`, at least every idle poll.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ...errors import OutboxUnavailable
from ...settings import StorageSettings
from .. import Engine
from ..outbox import Outbox
from .store import SqliteOutbox

__all__ = ["ENGINE", "OpenFile", "SqliteOutbox", "file_engine"]


class OpenFile(Protocol):
    """How an engine of one SQLite file opens it (SqliteOutbox.open and its like)."""

    async def __call__(self, path: Path, *, commit_interval: float = ...,
                       lease_seconds: float = ..., synchronous: str = ...,
                       clock: Callable[[], float] = ..., create: bool = ...) -> Outbox: ...


def file_engine(open_file: OpenFile) -> Engine:
    """An engine whose outbox is the one SQLite file at `storage.path`, opened by `open_file`
    (this engine's and the log-structured one's)."""

    async def open_(storage: StorageSettings, clock: Callable[[], float],
                    shared: bool) -> Outbox:
        # `shared` changes nothing here: WAL and BEGIN IMMEDIATE already serve several
        # processes.
        try:
            return await open_file(storage.path,
                                   commit_interval=storage.commit_interval_ms / 1000,
                                   lease_seconds=storage.lease_seconds,
                                   synchronous=storage.synchronous, clock=clock)
        except (sqlite3.Error, OSError) as exc:
            # A full disk (WAL mode must create its -wal and -shm files), an I/O error, a lock
            # held too long: what waiting may cure. The reason names no path (readiness shows
            # it).
            raise OutboxUnavailable(
                f"the outbox cannot be opened: {_describe_error(exc)}") from exc

    async def open_existing(storage: StorageSettings,
                            clock: Callable[[], float]) -> Outbox | None:
        if not storage.path.exists():
            return None
        return await open_file(storage.path, lease_seconds=storage.lease_seconds,
                               synchronous=storage.synchronous, clock=clock, create=False)

    return Engine(open=open_, open_existing=open_existing,
                  describe=lambda storage: str(storage.path))


def _describe_error(exc: sqlite3.Error | OSError) -> str:
    """Why a SQLite file could not be opened, naming no path."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc)


ENGINE = file_engine(SqliteOutbox.open)
