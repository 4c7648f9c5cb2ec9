"""The console's records in the PostgreSQL outbox database (see the protocol in ..outbox)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..types import ConsoleRecord
from .connection import Pool, touched

__all__ = ["PostgresConsoleRecords"]

_COLUMNS = "kind, name, body, secret, created_at, updated_at"
_BUMP = ("INSERT INTO console_versions (kind, version) VALUES ($1, 1)"
         " ON CONFLICT (kind) DO UPDATE SET version = console_versions.version + 1")


def _record(fields: Any) -> ConsoleRecord:
    kind, name, body, secret, created_at, updated_at = fields
    return ConsoleRecord(kind, name, body, None if secret is None else bytes(secret),
                         created_at, updated_at)


class PostgresConsoleRecords:
    """The store provides the pool and the clock."""

    _pool: Pool
    _clock: Callable[[], float]

    async def console_versions(self) -> dict[str, int]:
        async with self._pool.connection() as conn:
            rows = await conn.fetch("SELECT kind, version FROM console_versions")
        return {row[0]: int(row[1]) for row in rows}

    async def console_records(self, kind: str) -> list[ConsoleRecord]:
        async with self._pool.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM console_records WHERE kind = $1 ORDER BY name", kind)
        return [_record(row) for row in rows]

    async def console_record(self, kind: str, name: str) -> ConsoleRecord | None:
        async with self._pool.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM console_records WHERE kind = $1 AND name = $2",
                kind, name)
        return None if row is None else _record(row)

    async def _change(self, kind: str, sql: str, *params: Any) -> int:
        """Run one change of `kind`'s records; bump its version (same transaction) if it
        touched any row."""
        async with self._pool.transaction() as conn:
            changed = touched(await conn.execute(sql, *params))
            if changed:
                await conn.execute(_BUMP, kind)
        return changed

    async def add_console_record(self, kind: str, name: str, body: str,
                                 secret: bytes | None = None) -> bool:
        now = self._clock()
        return bool(await self._change(
            kind, f"INSERT INTO console_records ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $5)"
            " ON CONFLICT (kind, name) DO NOTHING", kind, name, body, secret, now))

    async def update_console_record(self, kind: str, name: str, body: str) -> bool:
        return bool(await self._change(
            kind, "UPDATE console_records SET body = $3, updated_at = $4"
            " WHERE kind = $1 AND name = $2", kind, name, body, self._clock()))

    async def set_console_secret(self, kind: str, name: str, secret: bytes | None) -> bool:
        return bool(await self._change(
            kind, "UPDATE console_records SET secret = $3, updated_at = $4"
            " WHERE kind = $1 AND name = $2", kind, name, secret, self._clock()))

    async def delete_console_record(self, kind: str, name: str) -> bool:
        return bool(await self._change(
            kind, "DELETE FROM console_records WHERE kind = $1 AND name = $2", kind, name))

    async def prune_console_records(self, kind: str, older_than: float) -> int:
        return await self._change(
            kind, "DELETE FROM console_records WHERE kind = $1 AND updated_at < $2",
            kind, older_than)
