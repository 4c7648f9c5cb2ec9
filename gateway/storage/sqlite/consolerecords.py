"""The console's records on the SQLite outbox file (see the protocol in ..outbox)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import aiosqlite

from ..types import ConsoleRecord

__all__ = ["SqliteConsoleRecords"]

T = TypeVar("T")

_COLUMNS = "kind, name, body, secret, created_at, updated_at"
_BUMP = ("INSERT INTO console_versions (kind, version) VALUES (?, 1)"
         " ON CONFLICT (kind) DO UPDATE SET version = version + 1")


def _record(fields: Any) -> ConsoleRecord:
    kind, name, body, secret, created_at, updated_at = fields
    return ConsoleRecord(kind, name, body, None if secret is None else bytes(secret),
                         created_at, updated_at)


def _changed(conn: sqlite3.Connection, kind: str, sql: str, params: tuple[Any, ...]) -> int:
    """Run one change of `kind`'s records; bump its version if it touched any row."""
    changed = conn.execute(sql, params).rowcount
    if changed:
        conn.execute(_BUMP, (kind,))
    return int(changed)


class SqliteConsoleRecords:
    """The store provides the connections and the clock."""

    _clock: Callable[[], float]
    _version: int

    def read(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, relaxed: bool = False) -> T:
        raise NotImplementedError

    def _has_records(self) -> bool:
        # A file opened for inspection without migrating may predate the tables.
        return self._version >= 5

    async def console_versions(self) -> dict[str, int]:
        if not self._has_records():
            return {}
        async with self.read() as db, db.execute(
                "SELECT kind, version FROM console_versions") as cursor:
            return {kind: int(version) async for kind, version in cursor}

    async def console_records(self, kind: str) -> list[ConsoleRecord]:
        if not self._has_records():
            return []
        async with self.read() as db, db.execute(
                f"SELECT {_COLUMNS} FROM console_records WHERE kind = ? ORDER BY name",
                (kind,)) as cursor:
            return [_record(row) async for row in cursor]

    async def console_record(self, kind: str, name: str) -> ConsoleRecord | None:
        if not self._has_records():
            return None
        async with self.read() as db, db.execute(
                f"SELECT {_COLUMNS} FROM console_records WHERE kind = ? AND name = ?",
                (kind, name)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _record(row)

    async def _change(self, kind: str, sql: str, *params: Any) -> int:
        return await self.write(lambda conn: _changed(conn, kind, sql, params))

    async def add_console_record(self, kind: str, name: str, body: str,
                                 secret: bytes | None = None) -> bool:
        now = self._clock()
        return bool(await self._change(
            kind, f"INSERT INTO console_records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (kind, name) DO NOTHING", kind, name, body, secret, now, now))

    async def update_console_record(self, kind: str, name: str, body: str) -> bool:
        return bool(await self._change(
            kind, "UPDATE console_records SET body = ?, updated_at = ?"
            " WHERE kind = ? AND name = ?", body, self._clock(), kind, name))

    async def set_console_secret(self, kind: str, name: str, secret: bytes | None) -> bool:
        return bool(await self._change(
            kind, "UPDATE console_records SET secret = ?, updated_at = ?"
            " WHERE kind = ? AND name = ?", secret, self._clock(), kind, name))

    async def delete_console_record(self, kind: str, name: str) -> bool:
        return bool(await self._change(
            kind, "DELETE FROM console_records WHERE kind = ? AND name = ?", kind, name))

    async def prune_console_records(self, kind: str, older_than: float) -> int:
        return await self._change(
            kind, "DELETE FROM console_records WHERE kind = ? AND updated_at < ?",
            kind, older_than)
