"""Storage: the durable outbox behind one protocol, and the engines that keep it.

Callers (ingest, the relay, the operator endpoints, the CLI) import from here only: the
`Outbox` protocol (outbox.py), its data types and states (types.py), `open_outbox` to open the
engine the settings name (`start_outbox` for a serving gateway, which starts even when the store
cannot be opened yet: deferred.py) and `open_existing` to inspect a store without creating it.
SQL and database drivers live inside the engines (`sqlite/`, `postgres/`), chosen by
`storage.engine`.

Adding a storage engine (e.g. `postgres`):
1. A package `gateway/storage/<name>/` with a class that implements `Outbox` (every method,
   same semantics: durable `enqueue`, leased `claim`, acknowledgements fenced by the lease,
   dedup at claim time; `wakeup` events for rows other processes or machines commit where the
   engine can notice them, the relay's idle poll of `next_due` covering the rest) and an
   `ENGINE = Engine(open=..., open_existing=..., describe=...)`; `enqueue` and `count_drop`
   go through a `GroupCommit` (groupcommit.py: `GroupCommitted` supplies those methods) given
   the engine's two transactions, and `write_problem` through a `readiness.SharedProbe`;
   `open` raises OutboxUnavailable for what waiting may cure (database down, disk full), and
   the serving gateway then retries it in the background.
2. One entry in `ENGINES` below (`storage.engine` accepts its name), and settings of its
   own in StorageSettings / config.py `_storage` if it needs any.
3. One more param of the `storage` fixture in tests/storage/conftest.py (settings pointing at
   a fresh, empty store): the conformance suite (tests/storage/test_conformance.py) then runs
   against it unchanged. Engine-specific tests go in tests/storage/<name>/.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..settings import StorageSettings
from .deferred import DeferredOutbox
from .outbox import Outbox
from .types import (
    DEAD_REASONS,
    FINISHED_STATES,
    OPEN_STATES,
    QUEUED_STATES,
    STATES,
    Claim,
    ClaimedRow,
    ConsoleRecord,
    DeadLetter,
    DeadLetterFilter,
    DropCount,
    LiveEvent,
    OutboxEntry,
    OutboxRow,
    ProcessReport,
    QueueDepth,
    StoreSize,
)

__all__ = [
    "DEAD_REASONS", "DEFAULT_ENGINE", "ENGINES", "FINISHED_STATES", "OPEN_STATES",
    "QUEUED_STATES", "STATES", "Claim", "ClaimedRow", "ConsoleRecord", "DeadLetter",
    "DeadLetterFilter", "DropCount", "Engine", "LiveEvent", "Outbox", "OutboxEntry", "OutboxRow",
    "ProcessReport", "QueueDepth", "StoreSize", "claims_at_once", "describe", "open_existing",
    "open_outbox", "start_outbox",
]

Clock = Callable[[], float]


@dataclass(frozen=True)
class Engine:
    """How to open one kind of store."""

    # The store the settings name, created (and migrated) if needed; OutboxUnavailable when
    # it cannot be reached now (retried by a serving gateway).
    open: Callable[[StorageSettings, Clock, bool], Awaitable[Outbox]]
    # An existing store as it is, or None when there is none yet (for the CLI).
    open_existing: Callable[[StorageSettings, Clock], Awaitable[Outbox | None]]
    # The store's name for people (a path, a host and database; never a password).
    describe: Callable[[StorageSettings], str]
    # Claims of one destination a relay worker may run at once while a backlog lasts: more
    # than one only where they run side by side (a database server's backends), not where
    # they would queue for one connection.
    claims_at_once: int = 1


def _sqlite() -> Engine:
    from .sqlite import ENGINE

    return ENGINE


def _sqlite_log() -> Engine:
    from .sqlitelog import ENGINE

    return ENGINE


def _postgres() -> Engine:
    from .postgres import ENGINE

    return ENGINE


# Imported on first use, so an engine's driver is needed only where it is used.
ENGINES: dict[str, Callable[[], Engine]] = {
    "sqlite": _sqlite, "sqlite-log": _sqlite_log, "postgres": _postgres}
DEFAULT_ENGINE = StorageSettings.engine


def _engine(storage: StorageSettings) -> Engine:
    return ENGINES[storage.engine]()


async def open_outbox(storage: StorageSettings, *, clock: Clock, shared: bool = False) -> Outbox:
    """Open the outbox the settings name, creating it (and migrating it) if needed.

    `shared`: other processes use the same store (`serve --workers N`)."""
    return await _engine(storage).open(storage, clock, shared)


async def start_outbox(storage: StorageSettings, *, clock: Clock, shared: bool = False) -> Outbox:
    """The outbox of a serving gateway: open if it can be opened now, otherwise opened in the
    background as soon as it can be, every call raising OutboxUnavailable until then."""
    outbox = DeferredOutbox(lambda: open_outbox(storage, clock=clock, shared=shared),
                            describe(storage))
    await outbox.start()
    return outbox


async def open_existing(storage: StorageSettings, *, clock: Clock) -> Outbox | None:
    """Open the store for inspection without creating or migrating it; None if there is none."""
    return await _engine(storage).open_existing(storage, clock)


def claims_at_once(storage: StorageSettings) -> int:
    """How many claims of one destination a relay worker may run at once (Engine)."""
    return _engine(storage).claims_at_once


def describe(storage: StorageSettings) -> str:
    """The store's name for messages (the SQLite file's path; PostgreSQL's host, port and
    database, never its user or password)."""
    return _engine(storage).describe(storage)
