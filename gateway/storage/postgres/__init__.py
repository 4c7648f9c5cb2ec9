"""The PostgreSQL engine: one database shared by every gateway node (`storage.engine: postgres`).

The only place that imports asyncpg. Opening creates or migrates the schema (schema.py: under an
advisory lock, so nodes starting together migrate once) and keeps a pool of `storage.pool_size`
connections per process, plus one connection that LISTENs for other nodes' commits (store.py).
A server that cannot be reached, is starting or shutting down, or has no connection slot left
is raised as OutboxUnavailable, at open (a serving gateway then keeps trying: deferred.py) and
on any call later; the pool replaces broken connections by itself.

Removing finished rows without bloat: every row is written three times in its life (insert,
claim, acknowledgement) and its indexed columns change each time, so most of a table's dead
row versions come from updates, not from pruning; time partitions dropped whole would remove
only the last part of that churn, and a partition can hold rows that must stay (dead letters,
the queue of a paused destination). So prune deletes finished rows in short chunks (never one
long transaction that holds back vacuum and ingest) and each table's autovacuum is tuned to run
after 2% of it changed, without cost pauses, so that the space of removed rows is reused by new
ones and the files stop growing once the retention window is full (measured under sustained
load over four retention periods: bench/bloat.py, docs/benchmarks.md). Payloads live in a
table of their own, so the rewrites copy only the small row.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import OutboxIncompatible
from ...settings import StorageSettings
from .. import Engine
from ..outbox import Outbox
from .clock import measure_offset
from .connection import SCAN_TIMEOUT, Pool, describe_dsn
from .schema import SCHEMA_VERSION, current, migrate
from .store import PostgresOutbox

__all__ = ["ENGINE", "PostgresOutbox"]


async def _open(storage: StorageSettings, clock: Callable[[], float], shared: bool) -> Outbox:
    # `shared` changes nothing here: every node and process has its own connections.
    pool = await Pool.open(storage.dsn, storage.pool_size)
    try:
        async with pool.connection() as conn:
            await migrate(conn)
            offset = await measure_offset(conn, clock)
    except BaseException:
        await pool.close()
        raise
    return PostgresOutbox(pool, storage.dsn, commit_interval=storage.commit_interval_ms / 1000,
                          lease_seconds=storage.lease_seconds, clock=clock,
                          clock_offset=offset)


async def _open_existing(storage: StorageSettings, clock: Callable[[], float]) -> Outbox | None:
    # For inspection (the CLI): a small pool, no listening, no migration.
    pool = await Pool.open(storage.dsn, 2, command_timeout=SCAN_TIMEOUT)
    try:
        async with pool.connection() as conn:
            version = await current(conn)
            offset = await measure_offset(conn, clock)
        if version > SCHEMA_VERSION:
            raise OutboxIncompatible(f"the outbox database has schema version {version}, newer "
                                     f"than this gateway's {SCHEMA_VERSION}: upgrade it")
    except BaseException:
        await pool.close()
        raise
    if version == 0:
        await pool.close()
        return None
    return PostgresOutbox(pool, storage.dsn, commit_interval=0,
                          lease_seconds=storage.lease_seconds, clock=clock, clock_offset=offset,
                          listen=False)


def _describe(storage: StorageSettings) -> str:
    return describe_dsn(storage.dsn)


# Two claims of a destination at once while a backlog lasts: each is one statement of tens of
# milliseconds, and the next batch's claim then runs while the last one's rows are handed out
# (one at a time, the claims' latency bounded a drain: docs/benchmarks.md).
ENGINE = Engine(open=_open, open_existing=_open_existing, describe=_describe, claims_at_once=2)
