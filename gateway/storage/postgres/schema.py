"""The PostgreSQL outbox's tables and their versioned migrations.

Every version's statements live in `MIGRATIONS` and never change once shipped: an empty
database runs them all, an older one the versions it lacks, in one transaction under a
transaction-scoped advisory lock, so that nodes starting together migrate once (the others wait
for the lock, then find the schema current). The table `outbox_schema` records the version.

Times are Unix seconds (double precision) in the database server's clock (clock.py: each node
adds its measured offset to its own clock), so that nodes whose clocks disagree still agree on
leases and due times; leases fence acknowledgements by exact equality.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ...errors import OutboxIncompatible
from ..types import FINISHED_STATES, QUEUED_STATES

__all__ = ["CHANNEL", "DEDUP_KEY", "FINISHED", "LIVE_CHANNEL", "MIGRATIONS", "NOTIFY", "PROBE",
           "QUEUED", "ROW_DEDUP_KEY", "SCHEMA_VERSION", "TABLES", "current", "dedup_key",
           "migrate"]

# The conditions of the partial indexes, written the same wherever a query must match them
# for the planner to use the index.
FINISHED = "state IN (" + ", ".join(f"'{state}'" for state in FINISHED_STATES) + ")"
QUEUED = "state IN (" + ", ".join(f"'{state}'" for state in QUEUED_STATES) + ")"

# The SQL function that makes a dedup key (schema version 5).
DEDUP_KEY = "outbox_dedup_key"
# An outbox row's dedup key, from its columns: a test send's pixel part names its test code,
# so that it never suppresses the real event. Rows written since schema version 6 carry theirs
# in `dedup_key` (made by the gateway: dedup_key below); older rows get it at their claim.
ROW_DEDUP_KEY = (f"{DEDUP_KEY}(destination, CASE WHEN test_event_code <> '' THEN pixel_id || '|'"
                 " || test_event_code ELSE pixel_id END, event_name, event_id)")


def dedup_key(destination: str, pixel_id: str, test_event_code: str, event_name: str,
              event_id: str) -> str:
    """ROW_DEDUP_KEY of a row, made by the gateway as it writes the row (hex): 1.3 us here
    against ~6 us of the database's CPU, which every node shares. The same MD5 of the same
    text on a UTF8 database (a test holds the two together); on a database of another
    encoding, a row queued before the upgrade to version 6 may not suppress its copy written
    after it (a repeat sent), as PostgreSQL there counts and hashes that encoding's bytes."""
    pixel = f"{pixel_id}|{test_event_code}" if test_event_code else pixel_id
    text = (f"{len(destination)}:{destination}{len(pixel)}:{pixel}{len(event_name)}:"
            f"{event_name}{event_id}")
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

# Autovacuum for tables whose rows are all rewritten (claim, acknowledgement) and then deleted
# by prune: vacuum after 2% of the table changed (default 20%) and without the cost pauses, so
# the space of finished rows is reused by new ones instead of growing the files.
_CHURN = ("autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000, "
          "autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0, "
          "autovacuum_analyze_scale_factor = 0.05")

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE outbox_schema (version integer NOT NULL)",
        "INSERT INTO outbox_schema (version) VALUES (0)",
        # Ids come from the sequence before the insert, so one statement can write a commit's
        # rows and their payloads (see store.py); never reused: dedup keys point at ids.
        "CREATE SEQUENCE outbox_id_seq AS bigint",
        f"""CREATE TABLE outbox (
    id bigint PRIMARY KEY,
    destination text NOT NULL,
    pixel_id text NOT NULL,
    test_event_code text NOT NULL,
    request_fields text NOT NULL DEFAULT '',  -- other top-level fields to forward, as JSON
    event_name text NOT NULL,
    event_id text NOT NULL,
    event_time bigint NOT NULL,
    expires_at double precision NOT NULL,     -- past this the platform refuses the event
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    available_at double precision NOT NULL,   -- pending: next attempt; inflight: lease expiry
    updated_at double precision NOT NULL,
    last_error text,
    reason text,                              -- dead letters: invalid | expired | token_revoked
    fbtrace_id text,
    rule_set text NOT NULL DEFAULT ''
) WITH ({_CHURN})""",
        # The event JSON lives apart: every state change writes a new version of the row, and a
        # small row is cheap to copy. Stored uncompressed (EXTERNAL): hashed user data barely
        # compresses, and the bytes backpressure counts are then the bytes written.
        f"""CREATE TABLE payloads (
    id bigint PRIMARY KEY,                    -- = outbox.id
    payload bytea NOT NULL,
    context bytea NOT NULL DEFAULT ''
) WITH ({_CHURN})""",
        "ALTER TABLE payloads ALTER COLUMN payload SET STORAGE EXTERNAL",
        f"CREATE INDEX outbox_due ON outbox (destination, available_at) WHERE {QUEUED}",
        f"CREATE INDEX outbox_finished ON outbox (updated_at) WHERE {FINISHED}",
        "CREATE INDEX outbox_dead ON outbox (destination, reason) WHERE state = 'dead'",
        f"""CREATE TABLE dedup (
    destination text NOT NULL,
    pixel_id text NOT NULL,
    event_name text NOT NULL,
    event_id text NOT NULL,
    row_id bigint NOT NULL,                   -- the outbox row that owns the key
    seen_at double precision NOT NULL,
    PRIMARY KEY (destination, pixel_id, event_name, event_id)
) WITH ({_CHURN})""",
        "CREATE INDEX dedup_seen ON dedup (seen_at)",
        """CREATE TABLE drops (
    hour bigint NOT NULL,                     -- Unix time of the hour's start
    rule text NOT NULL,
    source text NOT NULL,                     -- browser | server
    event_name text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (hour, rule, source, event_name)
)""",
        # Readiness rewrites this row (PROBE): proof that a transaction that writes commits.
        "CREATE TABLE readiness_probe (id integer PRIMARY KEY CHECK (id = 1),"
        " probes bigint NOT NULL)",
        "INSERT INTO readiness_probe (id, probes) VALUES (1, 0)",
        # For people at a psql prompt: every row with its event JSON.
        "CREATE VIEW outbox_events AS SELECT outbox.*, payloads.payload, payloads.context"
        " FROM outbox JOIN payloads USING (id)",
    ),
    # What the console creates (destinations, access keys, sessions), shared by every node;
    # a version per kind that each change increases, for cheap polling.
    2: (
        """CREATE TABLE console_records (
    kind text NOT NULL,
    name text NOT NULL,
    body text NOT NULL,                       -- JSON, never a secret
    secret bytea,                             -- encrypted by the gateway before it gets here
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    PRIMARY KEY (kind, name)
)""",
        "CREATE TABLE console_versions (kind text PRIMARY KEY, version bigint NOT NULL)",
    ),
    # The whole gateway's view for the console (postgres/whole.py): each serving process's
    # last report, the processes whose live events someone watches, and a ring of live events.
    3: (
        """CREATE UNLOGGED TABLE process_reports (
    process text PRIMARY KEY,                 -- host:pid (or host:pid.n)
    started_at double precision NOT NULL,
    seen_at double precision NOT NULL,
    report bytea NOT NULL                     -- JSON, read by gateway/whole
)""",
        """CREATE UNLOGGED TABLE live_watchers (
    process text PRIMARY KEY,
    until double precision NOT NULL
)""",
        "CREATE SEQUENCE live_events_id_seq AS bigint",
        """CREATE UNLOGGED TABLE live_events (
    id bigint PRIMARY KEY DEFAULT nextval('live_events_id_seq'),
    added_at double precision NOT NULL,
    process text NOT NULL,
    event bytea NOT NULL                      -- JSON, as the event bus told it
)""",
    ),
    # Claims take the oldest due rows by (available_at, id). Without the id in the index, a
    # claim sorted every row sharing the first due time (a group commit's: thousands after a
    # burst) to lock the first `limit` of them. The build locks out writes to the table for
    # its duration (seconds on a backlog of millions), once, at the upgrade.
    4: (
        f"CREATE INDEX outbox_due_ordered ON outbox (destination, available_at, id)"
        f" WHERE {QUEUED}",
        "DROP INDEX outbox_due",
    ),
    # Cheaper claims and acknowledgements (docs/benchmarks.md, "Relay drain on PostgreSQL").
    5: (
        # Each row is written three times (insert, claim, acknowledgement). With room left in
        # its page, a new version stays beside the old one: full pages sent every update to
        # another page, which costs a second buffer and a lock record in the WAL each time.
        # Pages written from now on; older ones fill as they are reused.
        "ALTER TABLE outbox SET (fillfactor = 50)",
        # A dedup key is the MD5 of its four parts (each but the last prefixed with its length,
        # so that no two keys share an input), as a uuid: 16 bytes compared with memcmp, where
        # four text columns made a wide row and index entry compared column by column. 128
        # bits: no collision to fear (one would wrongly suppress an event). Only immutable
        # operators in its body (`::text`, not `int || text`, which is stable), so that queries
        # inline it rather than call it row by row (~6 us each, a fifth of a claim's time).
        f"""CREATE FUNCTION {DEDUP_KEY}(destination text, pixel text, event_name text,
                                  event_id text) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT md5(length(destination)::text || ':' || destination || length(pixel)::text || ':'
                 || pixel || length(event_name)::text || ':' || event_name || event_id)::uuid $$""",
        f"""CREATE TABLE dedup_keys (
    key uuid PRIMARY KEY,                     -- {DEDUP_KEY}(destination, pixel, name, id)
    row_id bigint NOT NULL,                   -- the outbox row that owns the key
    seen_at double precision NOT NULL
) WITH ({_CHURN})""",
        f"INSERT INTO dedup_keys (key, row_id, seen_at) SELECT {DEDUP_KEY}(destination,"
        " pixel_id, event_name, event_id), row_id, seen_at FROM dedup",
        "DROP TABLE dedup",
        "ALTER TABLE dedup_keys RENAME TO dedup",
        "ALTER INDEX dedup_keys_pkey RENAME TO dedup_pkey",
        "CREATE INDEX dedup_seen ON dedup (seen_at)",
    ),
    # Each row's dedup key is made once, by the gateway that writes the row (dedup_key), not
    # by the database at each claim, where making 1,000 keys took about a seventh of the
    # claim's time. Rows already queued keep none (nullable: no rewrite of the table); their
    # claim makes it.
    6: (
        "ALTER TABLE outbox ADD COLUMN dedup_key uuid",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

# Wake-ups across nodes: committed rows NOTIFY this channel with their destination's name
# (delivered at the commit, to every node LISTENing, this one included).
CHANNEL = "tag_gateway_outbox"
NOTIFY = f"SELECT pg_notify('{CHANNEL}', name) FROM unnest($1::text[]) AS name"
# Live events were added (postgres/whole.py): readers on every node look at once.
LIVE_CHANNEL = "tag_gateway_live"

# The tables whose size backpressure counts (queue_depth).
TABLES = ("outbox", "payloads", "dedup", "drops")

PROBE = ("INSERT INTO readiness_probe (id, probes) VALUES (1, 1)"
         " ON CONFLICT (id) DO UPDATE SET probes = readiness_probe.probes + 1")

# Any constant every gateway agrees on: the advisory lock that serializes migrations.
_MIGRATION_LOCK = 0x7467_6F75_7462_6F78  # "tgoutbox"


async def current(conn: Any) -> int:
    """The database's schema version (0: no outbox yet)."""
    # Read from pg_tables with the statement's snapshot: to_regclass could answer from a
    # catalog cache older than the migration another node just committed.
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM pg_tables WHERE tablename ="
                               " 'outbox_schema' AND schemaname = current_schema())"):
        return 0
    return int(await conn.fetchval("SELECT version FROM outbox_schema"))


async def migrate(conn: Any) -> None:
    """Bring the database's schema to this gateway's version. A database already current is
    only read; otherwise under the migration lock, taken inside the migration's transaction
    (released by its commit, or by the server if this node dies meanwhile)."""
    if _current(await current(conn)):
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK,
                           timeout=MIGRATION_TIMEOUT)
        version = await current(conn)
        if _current(version):  # another node migrated it while we waited
            return
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                await conn.execute(statement, timeout=MIGRATION_TIMEOUT)
        await conn.execute("UPDATE outbox_schema SET version = $1", SCHEMA_VERSION)


# Not the serving path's statement timeout: a migration may build an index over millions of
# rows, and the nodes starting beside the one migrating wait for it on the lock.
MIGRATION_TIMEOUT = 600.0


def _current(version: int) -> bool:
    """True when a database of `version` needs no migration (a newer one is refused)."""
    if version > SCHEMA_VERSION:
        raise OutboxIncompatible(f"the outbox database has schema version {version}, newer "
                                 f"than this gateway's {SCHEMA_VERSION}: upgrade the gateway")
    return version == SCHEMA_VERSION
