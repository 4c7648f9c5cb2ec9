"""The log-structured SQLite outbox's tables and their migrations.

A row (what the protocol calls one: an event for one destination) has no table row of its own
while all goes well: it is route `i` of an `events` row, with row id `events.id + i`, and its
state follows from its destination's `batches` and `cursors`. Only exceptions get an
`exceptions` row (see the package docstring). `PRAGMA user_version` records the version a file
has reached; version n's statements in MIGRATIONS bring a file from n - 1 to n.
"""

from __future__ import annotations

import sqlite3

from ...errors import OutboxIncompatible
from ..sqlite.schema import DEDUP, migrate_once, statements, user_version
from ..sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS
from ..types import QUEUED_STATES

__all__ = ["APPLICATION_ID", "MIGRATIONS", "QUEUED", "SCHEMA_VERSION", "checked_version", "migrate",
           "user_version"]

# The condition of the due index, written the same wherever a query must match it.
QUEUED = "state IN (" + ", ".join(f"'{state}'" for state in QUEUED_STATES) + ")"

_TABLES = (
    # One row per event, whatever the number of destinations it goes to. Ids are never
    # reused (row_ids), so that a row id always names the same row.
    """CREATE TABLE events (
    id INTEGER PRIMARY KEY,      -- the row id of its first route; route i is row id + i
    waiting TEXT NOT NULL,       -- ' a b ': destinations of its pending routes, for claims
    routes BLOB NOT NULL,        -- JSON: per route [destination, pixel_id, test_event_code,
                                 -- request_fields, expires_at (null: never), state, note]
    event_name TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    rule_set TEXT NOT NULL,
    created_at REAL NOT NULL,
    context BLOB NOT NULL,
    payload BLOB NOT NULL        -- last: reading the columns before it skips its overflow
)""",
    "CREATE TABLE row_ids (id INTEGER PRIMARY KEY CHECK (id = 1), next INTEGER NOT NULL)",
    "INSERT INTO row_ids (id, next) VALUES (1, 1)",
    # Per destination: events up to `claimed` are in one of its batches; the batches up to
    # `acked` are all settled (the lowest contiguous acknowledged event). Its rows after the
    # cursor number `stored - passed` (less those set aside): counted without reading them.
    """CREATE TABLE cursors (
    destination TEXT PRIMARY KEY,
    claimed INTEGER NOT NULL DEFAULT 0,
    acked INTEGER NOT NULL DEFAULT 0,
    stored INTEGER NOT NULL DEFAULT 0,  -- its rows ever stored
    passed INTEGER NOT NULL DEFAULT 0   -- of those, the ones up to `claimed`
) WITHOUT ROWID""",
    # What a claim handed out: the destination's rows among events first..last (a
    # destination's batches tile 1..claimed). The lease fences acknowledgements.
    """CREATE TABLE batches (
    destination TEXT NOT NULL,
    last INTEGER NOT NULL,
    first INTEGER NOT NULL,
    size INTEGER NOT NULL,       -- rows handed out
    state TEXT NOT NULL,         -- inflight | pending (given back) | done
    lease REAL NOT NULL,         -- inflight: lease expiry; pending: due since
    claimed_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    settled TEXT NOT NULL DEFAULT '{}',  -- {event id: when} of rows settled before the end
    PRIMARY KEY (destination, last)
) WITHOUT ROWID""",
    "CREATE INDEX batches_open ON batches (destination, lease) WHERE state <> 'done'",
    "CREATE INDEX batches_changed ON batches (updated_at)",
    # Rows whose story left their batch: retries waiting, given back alone, dead letters,
    # duplicates, dry runs, rows delivered after any of these.
    """CREATE TABLE exceptions (
    id INTEGER PRIMARY KEY,      -- the row id
    event INTEGER NOT NULL,      -- = events.id
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    available_at REAL NOT NULL,  -- pending: next attempt; inflight: lease expiry
    updated_at REAL NOT NULL,
    last_error TEXT,
    reason TEXT,
    fbtrace_id TEXT
)""",
    f"CREATE INDEX exceptions_due ON exceptions (destination, available_at) WHERE {QUEUED}",
    "CREATE INDEX exceptions_dead ON exceptions (destination, reason) WHERE state = 'dead'",
    "CREATE INDEX exceptions_event ON exceptions (destination, event)",
    "CREATE INDEX exceptions_changed ON exceptions (updated_at)",
)

# Tables the same as the sqlite engine's, created by its own statements: dedup keys, drop
# counts, the readiness probe and console records (its migrations 3-5), and the whole
# gateway's view (its migration 6; this engine's 2).
_SHARED = (*statements(DEDUP), *SQLITE_MIGRATIONS[3], *SQLITE_MIGRATIONS[4],
           *SQLITE_MIGRATIONS[5])
MIGRATIONS: dict[int, tuple[str, ...]] = {1: (*_TABLES, *_SHARED), 2: SQLITE_MIGRATIONS[6]}
SCHEMA_VERSION = max(MIGRATIONS)
# Not a version of the sqlite engine's file: `application_id` tells the two apart, so that
# neither engine opens the other's file as if it were its own.
APPLICATION_ID = 0x5447_4C31  # "TGL1"


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to SCHEMA_VERSION (see migrate_once) and return it."""
    migrate_once(conn, _current, _apply)
    return SCHEMA_VERSION


def _apply(conn: sqlite3.Connection) -> None:
    for target in range(user_version(conn) + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[target]:
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def checked_version(conn: sqlite3.Connection) -> int:
    """The file's version, after checking that it is this engine's (for inspection)."""
    _current(conn)
    return user_version(conn)


def _current(conn: sqlite3.Connection) -> bool:
    version = user_version(conn)
    [(application,)] = conn.execute("PRAGMA application_id").fetchall()
    if version and application != APPLICATION_ID:
        raise OutboxIncompatible(
            "the outbox file was written by another storage engine (sqlite, or another "
            "program): sqlite-log does not convert it. Name the engine that wrote it in "
            "storage.engine, or give storage.path a new file once its queue is delivered "
            "(docs/architecture.md, \"Choosing a SQLite engine\")")
    if version > SCHEMA_VERSION:
        raise OutboxIncompatible(f"the outbox file has schema version {version}, newer than "
                                 f"this gateway's {SCHEMA_VERSION}: upgrade the gateway")
    return version == SCHEMA_VERSION
