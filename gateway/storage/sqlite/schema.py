"""The SQLite outbox's tables, their migrations, and the SQL conditions several modules share.

`SCHEMA` is the first version's schema and never changes: a new file is created with it and then
brought up to date by the same `MIGRATIONS` that update a file written by an older gateway, so
both paths are one. `PRAGMA user_version` records the version a file has reached.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ...errors import OutboxIncompatible
from ..types import FINISHED_STATES, QUEUED_STATES

__all__ = ["DEDUP", "FINISHED", "LAST_ID", "MIGRATIONS", "PROBE", "QUEUED", "SCHEMA",
           "SCHEMA_VERSION", "migrate", "migrate_once", "statements", "user_version"]

# The conditions of the partial indexes, written the same wherever a query must match them
# for SQLite to use the index.
FINISHED = "state IN (" + ", ".join(f"'{state}'" for state in FINISHED_STATES) + ")"
QUEUED = "state IN (" + ", ".join(f"'{state}'" for state in QUEUED_STATES) + ")"
# The highest outbox id ever given (AUTOINCREMENT's record; 0 before the first row).
LAST_ID = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)"

# Dedup keys (sqlite/dedup.py), in every SQLite engine's file.
DEDUP = """CREATE TABLE IF NOT EXISTS dedup (
    destination TEXT NOT NULL,
    pixel_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    event_id TEXT NOT NULL,
    row_id INTEGER NOT NULL,     -- the outbox row that owns the key
    seen_at REAL NOT NULL,
    PRIMARY KEY (destination, pixel_id, event_name, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_seen ON dedup (seen_at);
"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: dedup keys point at row ids
    destination TEXT NOT NULL,
    pixel_id TEXT NOT NULL,
    test_event_code TEXT NOT NULL,
    request_fields TEXT NOT NULL DEFAULT '',  -- other top-level fields to forward, as JSON
    event_name TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    expires_at REAL NOT NULL,    -- past this Meta refuses the event
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    available_at REAL NOT NULL,  -- pending: next attempt; inflight: lease expiry
    updated_at REAL NOT NULL,
    last_error TEXT,
    reason TEXT,                 -- dead letters: invalid | expired | token_revoked
    fbtrace_id TEXT,
    rule_set TEXT NOT NULL DEFAULT ''  -- hash of the rule set that decided the event
);
-- The event JSON lives apart: state changes rewrite a whole row, and a small row is cheap.
CREATE TABLE IF NOT EXISTS payloads (
    id INTEGER PRIMARY KEY,      -- = outbox.id
    payload BLOB NOT NULL
);
-- For people (and sqlite3 at a terminal): every row with its event JSON.
CREATE VIEW IF NOT EXISTS outbox_events AS
    SELECT outbox.*, payloads.payload FROM outbox JOIN payloads USING (id);
CREATE TRIGGER IF NOT EXISTS outbox_payload_gone AFTER DELETE ON outbox BEGIN
    DELETE FROM payloads WHERE id = OLD.id;
END;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (destination, available_at)
    WHERE {QUEUED};
CREATE INDEX IF NOT EXISTS outbox_finished ON outbox (updated_at)
    WHERE {FINISHED};
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (destination, reason) WHERE state = 'dead';
{DEDUP}"""

# Version n's statements bring a file from version n - 1 to n, in one transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Per-event context for destinations that need it at send time (JSON; empty: none).
    2: ("ALTER TABLE payloads ADD COLUMN context BLOB NOT NULL DEFAULT x''",),
    # Events the rules dropped: no row each, a count per hour, rule, source and event name.
    3: ("""CREATE TABLE IF NOT EXISTS drops (
    hour INTEGER NOT NULL,       -- Unix time of the hour's start
    rule TEXT NOT NULL,
    source TEXT NOT NULL,        -- browser | server
    event_name TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour, rule, source, event_name)
) WITHOUT ROWID""",),
    # The readiness probe: one row that readiness rewrites (see PROBE), to prove that a
    # transaction writing a page can commit (an empty one commits even on a full disk).
    4: ("CREATE TABLE readiness_probe (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " probes INTEGER NOT NULL)",
        "INSERT INTO readiness_probe (id, probes) VALUES (1, 0)"),
    # What the console creates (destinations, access keys, sessions), shared by every process
    # on the file; a version per kind that each change increases, for cheap polling.
    5: ("""CREATE TABLE console_records (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,          -- JSON, never a secret
    secret BLOB,                 -- encrypted by the gateway before it gets here
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID""",
        "CREATE TABLE console_versions (kind TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        " WITHOUT ROWID"),
    # The whole gateway's view for the console (sqlite/whole.py): each serving process's last
    # report, the processes whose live events someone watches, and a ring of live events.
    6: ("""CREATE TABLE process_reports (
    process TEXT PRIMARY KEY,    -- host:pid (or host:pid.n)
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL,
    report BLOB NOT NULL         -- JSON, read by gateway/whole
) WITHOUT ROWID""",
        """CREATE TABLE live_watchers (
    process TEXT PRIMARY KEY,
    until REAL NOT NULL
) WITHOUT ROWID""",
        # AUTOINCREMENT: ids are never reused once the ring is trimmed (readers follow them).
        """CREATE TABLE live_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    added_at REAL NOT NULL,
    process TEXT NOT NULL,
    event BLOB NOT NULL          -- JSON, as the event bus told it
)"""),
}
SCHEMA_VERSION = max(MIGRATIONS)

# Readiness writes this. A counter, so that every probe changes the page: SQLite skips
# writing a row whose new content equals the old. An upsert, so a deleted row comes back.
PROBE = ("INSERT INTO readiness_probe (id, probes) VALUES (1, 1)"
         " ON CONFLICT (id) DO UPDATE SET probes = probes + 1")


def user_version(conn: sqlite3.Connection) -> int:
    [(version,)] = conn.execute("PRAGMA user_version").fetchall()
    return int(version)


def statements(script: str) -> list[str]:
    """A script's statements (executescript would commit the transaction they belong in)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    return statements


def migrate_once(conn: sqlite3.Connection, current: Callable[[sqlite3.Connection], bool],
                 apply: Callable[[sqlite3.Connection], None]) -> None:
    """Run `apply` (an engine's migrations) unless `current` says the file needs none.

    A file already up to date is only read: opening it must work on a full disk. Otherwise
    under the write lock, asked again once it is held, so that processes opening one file
    together migrate it once; a failed migration leaves the file as it was."""
    if current(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if current(conn):  # another process migrated it meanwhile
            conn.rollback()
            return
        apply(conn)
        conn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


def migrate(conn: sqlite3.Connection) -> None:
    """Create the first version's tables if missing, then apply the migrations the file lacks."""
    _ours(conn)
    migrate_once(conn, lambda c: _current(user_version(c)), _apply)


def _apply(conn: sqlite3.Connection) -> None:
    version = user_version(conn)
    if version == 0:
        for statement in statements(SCHEMA):
            conn.execute(statement)
        version = 1
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[target]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _ours(conn: sqlite3.Connection) -> None:
    """Refuse a file another engine wrote: this engine's files leave `application_id` at 0,
    others set their own (sqlitelog/schema.py)."""
    [(application,)] = conn.execute("PRAGMA application_id").fetchall()
    if application:
        raise OutboxIncompatible(
            "the outbox file was written by another storage engine (sqlite-log, or another "
            "program): the sqlite engine opens only its own files. Name the engine that wrote "
            "it in storage.engine, or give storage.path a new file (docs/architecture.md, "
            "\"Choosing a SQLite engine\")")


def _current(version: int) -> bool:
    """True when a file of `version` needs no migration (a newer one is refused)."""
    if version > SCHEMA_VERSION:
        raise OutboxIncompatible(f"the outbox file has schema version {version}, newer than "
                                 f"this gateway's {SCHEMA_VERSION}: upgrade the gateway")
    return version == SCHEMA_VERSION
