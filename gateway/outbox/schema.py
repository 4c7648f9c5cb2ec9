"""The outbox's tables and the SQL that several modules share.

Row states
- pending -> inflight (claimed under a lease) -> delivered | dry_run
- inflight -> pending (retry later, or given back at shutdown / on a paused destination)
- inflight -> duplicate: the same (pixel, event_name, event_id) already went to this destination
  within the dedup window
- pending | inflight -> dead, with `reason`: invalid (Meta refused the event; `last_error` holds
  its message and `fbtrace_id` its trace id), expired (past Meta's 7 / 62-day window), or
  token_revoked (expired while the destination's token was refused)
- unrouted (no destination accepts the pixel) and invalid (fails Meta's rules at ingest) rows are
  written that way and only kept for inspection.
Finished rows (delivered, dry_run, duplicate, unrouted, invalid) are pruned after the retention
period; dead letters stay until replayed or deleted by a person.
"""

from __future__ import annotations

__all__ = ["DEAD_REASONS", "FINISHED", "FINISHED_STATES", "QUEUED", "SCHEMA", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
FINISHED_STATES = ("delivered", "dry_run", "duplicate", "unrouted", "invalid")
# The conditions of the partial indexes, written the same wherever a query must match them
# for SQLite to use the index.
FINISHED = "state IN (" + ", ".join(f"'{state}'" for state in FINISHED_STATES) + ")"
QUEUED = "state IN ('pending', 'inflight')"
DEAD_REASONS = ("invalid", "expired", "token_revoked")

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
CREATE TABLE IF NOT EXISTS dedup (
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
