"""The PostgreSQL engine's connections: the pool, the errors waiting may cure, the DSN shown
without its secrets.

asyncpg is imported here and in the modules of this package only (the SQLite engine's users
never need it). Its objects are untyped (`Any`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from ...errors import OutboxUnavailable

__all__ = ["CONNECT_TIMEOUT", "SCAN_TIMEOUT", "Pool", "describe_dsn", "touched", "unavailable"]

CONNECT_TIMEOUT = 5.0  # seconds to reach the server before a call gives up (and retries later)
# A statement unanswered this long is abandoned and its connection closed: a node cut off from
# the database (a partition) hears nothing back, and ingest must answer 503 rather than hang.
# Every statement of the serving path is short (bounded batches and chunks).
COMMAND_TIMEOUT = 5.0
# The same for reads that may scan the whole queue or table (reports for /status, /metrics and
# the CLI, backpressure's count: millions of rows take seconds) and for everything the CLI runs:
# a person or a background check waits for them, not a sender.
SCAN_TIMEOUT = 120.0
# The server ends a transaction its client left open this long: a node cut off in the middle of
# one (its COMMIT lost on the way) would otherwise hold the rows it locked, which every other
# node's claim skips, until the server's TCP keepalive gave up on it (hours).
IDLE_IN_TRANSACTION = "10s"

# SQLSTATE classes and codes waiting may cure: connection failures (08), insufficient resources
# (53: too many connections, disk full, out of memory), the server shutting down or starting
# (57P01-57P03), a statement cancelled by a timeout (57014), conflicts between transactions
# (40: serialization failure, deadlock), I/O errors (58), a standby during a failover (25006),
# a lock not available now (55P03).
_CURABLE_CLASSES = ("08", "53", "40", "58")
_CURABLE_CODES = ("57P01", "57P02", "57P03", "57014", "25006", "55P03")


def describe_dsn(dsn: str) -> str:
    """The server and database a DSN names, for people: never its user or password."""
    try:
        parts = urlsplit(dsn)
        host, port = parts.hostname or "localhost", parts.port or 5432
    except ValueError:
        return "postgresql (an unreadable storage.dsn)"
    host = f"[{host}]" if ":" in host else host
    database = parts.path.lstrip("/") or "(the user's database)"
    if "/" in database or "@" in database:  # a password's unencoded `/` split the URL there
        return "postgresql (an unreadable storage.dsn)"
    return f"postgresql://{host}:{port}/{database}"


def unavailable(exc: BaseException) -> OutboxUnavailable | None:
    """`exc` as an OutboxUnavailable when waiting may cure it (None otherwise). The reason is
    the server's or the system's message: neither holds the DSN's password."""
    if isinstance(exc, OutboxUnavailable):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        code = str(getattr(exc, "sqlstate", "") or "")
        if code[:2] in _CURABLE_CLASSES or code in _CURABLE_CODES:
            return OutboxUnavailable(f"the outbox database is unavailable: {_first_line(exc)}")
        return None
    if isinstance(exc, TimeoutError):  # before OSError: it is one
        return OutboxUnavailable("the outbox database did not answer in time")
    if isinstance(exc, OSError):
        reason = os.strerror(exc.errno) if exc.errno else "cannot connect"
        return OutboxUnavailable(f"the outbox database cannot be reached: {reason}")
    if isinstance(exc, asyncpg.InterfaceError):  # e.g. the connection was closed under us
        return OutboxUnavailable(f"the outbox database connection failed: {_first_line(exc)}")
    return None


def touched(status: str) -> int:
    """Rows a statement touched, from its status ("UPDATE 3")."""
    return int(status.rsplit(" ", 1)[-1])


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class Pool:
    """asyncpg's pool with every curable failure raised as OutboxUnavailable. A connection
    that broke is dropped by the pool when given back, and the next call opens a new one: the
    store reconnects by itself once the server answers again."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, size: int, *, command_timeout: float = COMMAND_TIMEOUT) -> Pool:
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=size, timeout=CONNECT_TIMEOUT,
                command_timeout=command_timeout,
                # A JIT compile costs more than these small statements (PostgreSQL's default
                # turns it on for any plan its estimates call expensive).
                # Read committed whatever the server's default: migrations re-read the version
                # after taking their lock, and claims rely on SKIP LOCKED, not on snapshots.
                server_settings={"jit": "off", "application_name": "tag-gateway",
                                 "default_transaction_isolation": "read committed",
                                 "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION},
                reset=_keep_session)
        except Exception as exc:
            raise _curable(exc) from exc
        return cls(pool)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                try:
                    yield conn
                except TimeoutError:
                    # No answer: the server, or the way to it, may be gone. Close the
                    # connection now; asking the server to cancel the statement (asyncpg's
                    # way) and waiting for that would hang as long again.
                    conn.terminate()
                    raise
        except Exception as exc:
            problem = unavailable(exc)
            if problem is None:
                raise
            raise problem from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A connection inside a transaction (committed at the end, rolled back on error; a
        statement left unanswered closes the connection instead, which ends the transaction
        on the server)."""
        async with self.connection() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                yield conn
            except TimeoutError:
                raise  # a ROLLBACK would wait on the server that did not answer
            except BaseException:
                await transaction.rollback()
                raise
            await transaction.commit()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), COMMAND_TIMEOUT)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._pool.terminate()


async def _keep_session(_conn: Any) -> None:
    """What a connection given back to the pool needs reset, beyond the rollback of an open
    transaction asyncpg does anyway: nothing. The store takes no session-level advisory lock
    (migrations hold theirs for the transaction), sets nothing, declares cursors only inside
    transactions and LISTENs on a connection of its own; asyncpg's default reset would cost one
    more round trip (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) every time a connection
    is given back: twice per batch relayed."""


def _curable(exc: Exception) -> Exception:
    """Opening: what waiting may cure as OutboxUnavailable. A refused login or a missing
    database is curable too (an operator or a provisioning step fixes it while the gateway
    answers 503, and readiness says why)."""
    problem = unavailable(exc)
    if problem is not None:
        return problem
    if isinstance(exc, asyncpg.PostgresError):
        return OutboxUnavailable(f"the outbox database refused the connection: "
                                 f"{_first_line(exc)}")
    return exc
