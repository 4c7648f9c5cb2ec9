"""The PostgreSQL outbox: group-committed inserts, claims under a lease with SKIP LOCKED,
fenced acknowledgements, wake-ups across nodes with LISTEN/NOTIFY.

Ingest calls `enqueue`, which returns once a transaction holding the rows has committed. Rows
arriving while a commit runs (or within `commit_interval`) share the next transaction: one
statement writes them all (arrays unnested server-side, ids drawn from the sequence in the same
statement), with the drop counts and one NOTIFY per destination, so a commit costs a few round
trips whatever the number of events.

Any node may relay any destination. A claim locks its due rows with FOR UPDATE SKIP LOCKED and
leases them in the same statement: concurrent claimers (other nodes, other workers) skip rows
another claim holds, so a row is in one batch at a time, and the batch is the caller's whole
until its lease runs out. Acknowledgements match the claim's lease exactly (the fence).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from itertools import groupby
from typing import Any

import asyncpg

from ..groupcommit import DROPS_INTERVAL, Drops, GroupCommit, GroupCommitted
from ..readiness import SharedProbe
from ..types import Claim, ClaimedRow, OutboxEntry
from .clock import ServerClock
from .connection import COMMAND_TIMEOUT, CONNECT_TIMEOUT, Pool, touched, unavailable
from .consolerecords import PostgresConsoleRecords
from .queries import PostgresQueries
from .schema import CHANNEL, LIVE_CHANNEL, NOTIFY, PROBE, QUEUED, ROW_DEDUP_KEY, dedup_key
from .whole import WholeQueries

__all__ = ["PostgresOutbox"]

log = logging.getLogger(__name__)

LISTEN_RETRY_SECONDS = (0.5, 10.0)  # first and longest wait before listening again
# A network partition closes nothing: a listening connection cut off from the server, then
# left dead by the time the network heals, would wait for notifications for ever. Asked this
# often whether it still answers (within COMMAND_TIMEOUT), it is opened again when it does not.
LISTEN_PING_SECONDS = 15.0

_INSERT = """
WITH batch AS MATERIALIZED (
    SELECT nextval('outbox_id_seq') AS id, b.*
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                $7::float8[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bytea[],
                $13::bytea[], $14::uuid[])
         AS b(destination, pixel_id, test_event_code, event_name, event_id, event_time,
              expires_at, state, last_error, rule_set, request_fields, payload, context,
              dedup_key)
), stored AS (
    INSERT INTO payloads (id, payload, context) SELECT id, payload, context FROM batch
)
INSERT INTO outbox (id, destination, pixel_id, test_event_code, event_name, event_id,
                    event_time, expires_at, state, last_error, rule_set, request_fields,
                    created_at, available_at, updated_at, dedup_key)
SELECT id, destination, pixel_id, test_event_code, event_name, event_id, event_time,
       expires_at, state, last_error, rule_set, request_fields, $15, $15, $15, dedup_key
FROM batch
"""
_COUNT_DROPS = """
INSERT INTO drops (hour, rule, source, event_name, count)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])
ON CONFLICT (hour, rule, source, event_name) DO UPDATE SET count = drops.count + excluded.count
"""
# The rows are locked (SKIP LOCKED), then leased by id through the primary key, then joined to
# their events: written as one UPDATE ... FROM with the join, the planner hashed the whole
# outbox table for every claim (a sequential scan, ~40% of a claim's time on a 50,000-row
# backlog).
_LEASE = f"""
WITH due AS (
    SELECT id FROM outbox
    WHERE destination = $1 AND {QUEUED} AND available_at <= $2
    ORDER BY available_at, id LIMIT $3
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE outbox SET state = 'inflight', available_at = $4, updated_at = $2
    WHERE id = ANY(ARRAY(SELECT id FROM due))
    RETURNING id, pixel_id, test_event_code, event_name, event_id, attempts, available_at,
              expires_at, request_fields, coalesce(dedup_key, {ROW_DEDUP_KEY}) AS key
), claimed AS (
    SELECT leased.*, payloads.payload, payloads.context
    FROM leased LEFT JOIN payloads USING (id)
)"""
# What a claim returns of each row (see _claimed). Not its key (~0.5 us to decode each): only
# a row that lost its key needs it, and _LOSERS reads it from the table.
_RETURNED = ("id, pixel_id, test_event_code, event_name, event_id, attempts, available_at,"
             " expires_at, request_fields, payload, context")
_CLAIM = f"{_LEASE} SELECT {_RETURNED}, true FROM claimed"
# The claim with dedup in the same statement (one round trip, committed on its own): each live
# claimed row proposes itself as the owner of its key (the first row of a key in this claim
# only, keys in one order so that concurrent claims lock them alike), and takes it unless
# another row of the destination owns it within the window and that owner is not waiting or
# refused; rows of this claim count as leased, as they are. The last column says whether the
# row now owns its key; only when one does not are the losers looked up (_LOSERS).
# The owner's state is read with a lock: a plain read would see it in this statement's snapshot,
# where an owner another claim leased meanwhile (the claim whose key this one waited for) is
# still pending, and both copies would go out; the lock reads its newest version. An owner
# locked right now (a claim or an acknowledgement in progress) is not taken over.
_CLAIM_DEDUP = f"""{_LEASE}, proposed AS (
    SELECT DISTINCT ON (key) key, id FROM claimed
    WHERE expires_at >= $2 AND payload IS NOT NULL
    ORDER BY key, id
), owners AS (
    INSERT INTO dedup (key, row_id, seen_at)
    SELECT key, id, $2 FROM proposed ORDER BY key
    ON CONFLICT (key) DO UPDATE
    SET row_id = excluded.row_id, seen_at = excluded.seen_at
    WHERE dedup.seen_at < $5
       OR (dedup.row_id NOT IN (SELECT id FROM leased)
           AND (SELECT state FROM outbox WHERE id = dedup.row_id FOR SHARE SKIP LOCKED)
               IN ('dead', 'pending'))
    RETURNING row_id
)
SELECT {_RETURNED}, id IN (SELECT row_id FROM owners) FROM claimed
"""
_DEAD = ("UPDATE outbox SET state = 'dead', reason = $1, updated_at = $2, last_error = $3"
         " WHERE id = ANY($4::bigint[])")
_LEASED = " AND state = 'inflight' AND available_at = $5"  # rows of the claim just made
_EXPIRE = (f"UPDATE outbox SET state = 'dead', reason = $1, updated_at = $2, last_error = $3"
           f" WHERE destination = $4 AND {QUEUED} AND expires_at < $2")
_RETRY_NOW = (f"UPDATE outbox SET available_at = $1 WHERE destination = $2 AND {QUEUED}"
              " AND state = 'pending' AND available_at > $1")
_EXPIRED_ERROR = "past the platform's time window for this event"
# Every acknowledgement is fenced by the claim's lease: a claim that outlived its lease (and may
# have been re-claimed by another node) cannot overwrite a newer outcome.
_FENCE = " WHERE state = 'inflight' AND available_at = $1 AND id = ANY($2::bigint[])"

# Dedup at claim time (see the SQLite engine's dedup.py for the rules): in _CLAIM_DEDUP.
_LOSERS = f"""
SELECT outbox.id, dedup.row_id
FROM outbox JOIN dedup ON dedup.key = coalesce(outbox.dedup_key, {ROW_DEDUP_KEY})
WHERE outbox.id = ANY($1::bigint[]) AND dedup.row_id <> outbox.id
"""
_DUPLICATES = """
UPDATE outbox SET state = 'duplicate', updated_at = $1, last_error = 'duplicate of row ' || l.owner
FROM unnest($2::bigint[], $3::bigint[]) AS l(row_id, owner)
WHERE outbox.id = l.row_id AND state = 'inflight' AND available_at = $4
"""


def _claimed(row: tuple[Any, ...], time: ServerClock) -> ClaimedRow:
    """A claimed row with its times in the caller's clock."""
    (row_id, pixel_id, test_event_code, event_name, event_id, attempts, lease, expires_at,
     request_fields, payload, context) = row
    return ClaimedRow(row_id, pixel_id, test_event_code, event_name, event_id, attempts,
                      time.to_local(lease), time.to_local(expires_at), request_fields, payload,
                      context or b"")


def _set_on_loss(lost: asyncio.Event, _conn: Any) -> None:
    lost.set()


async def _hold(conn: Any, lost: asyncio.Event) -> None:
    """Return when the listening connection is lost, or raise when it stops answering."""
    while not lost.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lost.wait(), LISTEN_PING_SECONDS)
            return
        # Bounded by wait_for, not asyncpg's timeout: asyncpg would ask the server to cancel
        # over a link that may be dead, and wait as long again.
        await asyncio.wait_for(conn.execute("SELECT 1"), COMMAND_TIMEOUT)


def _lease(row: ClaimedRow) -> float:
    return row.lease


def _describe(exc: BaseException) -> str:
    """An error for people: the server's reason when waiting may cure it, else its kind."""
    return str(unavailable(exc) or type(exc).__name__)


def _text(value: str) -> str:
    """Text PostgreSQL can hold: it refuses NUL, which a platform's error message or a
    reason quoting one may carry (SQLite takes it); an acknowledgement that failed on it would
    leave its rows leased and sent again, for ever."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


class PostgresOutbox(GroupCommitted, PostgresQueries, PostgresConsoleRecords,
                     WholeQueries):
    """Durable queue of events per destination in one PostgreSQL database, shared by nodes."""

    def __init__(
        self,
        pool: Pool,
        dsn: str,
        *,
        commit_interval: float,
        lease_seconds: float,
        clock: Callable[[], float],
        clock_offset: float = 0.0,
        listen: bool = True,
        drops_interval: float = DROPS_INTERVAL,
    ) -> None:
        """`clock_offset`: the server's clock minus `clock` (clock.py), measured at open;
        a listening (serving) store measures it again as it runs."""
        self._pool = pool
        self._dsn = dsn  # for the listening connection; never logged
        self._lease = lease_seconds
        self._time = ServerClock(clock, clock_offset)
        # The caller's own clock: the console's records and the processes' reports are written
        # and compared by the callers in it (they lease nothing another node could take).
        self._clock = clock
        self._wakeups: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._live = asyncio.Event()  # live events added, here or on any node (whole.py)
        self._closed = False
        self._group = GroupCommit(
            interval=commit_interval, clock=clock, insert=self._insert,
            insert_drops=self._insert_drops, committed=self._wake,
            describe=_describe,
            # A server that is down fails every request alike: no point asking one by one.
            one_by_one=lambda exc: unavailable(exc) is None,
            drops_interval=drops_interval,
        )
        self._readiness = SharedProbe(self._write_probe, describe=_describe)
        self._background: list[asyncio.Task[None]] = []
        if listen:
            self._background = [
                asyncio.create_task(self._listen(), name="outbox:listen"),
                asyncio.create_task(self._time.follow(pool), name="outbox:clock")]

    async def _close(self) -> None:
        self._closed = True
        await self._group.close()
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._pool.close()

    # -- ingest side --------------------------------------------------------------------------
    async def _insert(self, entries: list[OutboxEntry], drops: Drops) -> None:
        """Insert the rows and the drops in one transaction (the group commit's), and tell
        every node's relays."""
        columns: list[list[Any]] = [[] for _ in range(14)]
        for e in entries:
            for column, value in zip(columns, (
                    e.destination, e.pixel_id, e.test_event_code, e.event_name, e.event_id,
                    e.event_time, self._time.to_server(e.expires_at), e.state,
                    e.note and _text(e.note), e.rule_set, e.request_fields, e.payload,
                    e.context, dedup_key(e.destination, e.pixel_id, e.test_event_code,
                                         e.event_name, e.event_id)), strict=True):
                column.append(value)
        async with self._pool.transaction() as conn:
            await conn.execute(_INSERT, *columns, self._time.now())
            await _count_drops(conn, drops)
            await conn.execute(NOTIFY, sorted({e.destination for e in entries}))

    async def _insert_drops(self, drops: Drops) -> None:
        async with self._pool.transaction() as conn:
            await _count_drops(conn, drops)

    def _wake(self, destinations: set[str]) -> None:
        """The NOTIFY reaches this node too; this is sooner."""
        for name in destinations:
            self._wakeups[name].set()

    # -- wake-ups ------------------------------------------------------------------------------
    def wakeup(self, destination: str) -> asyncio.Event:
        """An event set whenever rows for `destination` are committed or replayed, by this
        node or any other on the database (LISTEN/NOTIFY)."""
        return self._wakeups[destination]

    def destinations(self) -> list[str]:
        return list(self._wakeups)

    def _notified(self, _conn: Any, _pid: int, _channel: str, destination: str) -> None:
        if destination in self._wakeups:
            self._wakeups[destination].set()

    async def _listen(self) -> None:
        """Hold a connection of its own that LISTENs (a pooled one would be reset when given
        back), and open it again when it breaks. Notifications sent while it was away are lost:
        every waiting destination is woken when it comes back, and the relay's idle poll of
        `next_due` covers the time between."""
        delay, missed = LISTEN_RETRY_SECONDS[0], False
        while True:
            lost = asyncio.Event()
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
                conn.add_termination_listener(partial(_set_on_loss, lost))
                await conn.add_listener(CHANNEL, self._notified)
                await conn.add_listener(LIVE_CHANNEL, self._live_notified)
                delay = LISTEN_RETRY_SECONDS[0]
                if missed:  # commits may have come meanwhile: look
                    for event in self._wakeups.values():
                        event.set()
                await _hold(conn, lost)
            except asyncio.CancelledError:
                if conn is not None:
                    conn.terminate()
                raise
            except Exception as exc:
                log.debug("outbox wake-ups: cannot listen (%s); retrying",
                          unavailable(exc) or type(exc).__name__)
            if conn is not None:
                conn.terminate()
            missed = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_SECONDS[1])

    # -- relay side ---------------------------------------------------------------------------
    async def claim(self, destination: str, limit: int, *, dedup_seconds: float = 0.0) -> Claim:
        """Lease up to `limit` due rows of `destination`, oldest first, and set aside expired
        rows, rows without their event and repeats (see Outbox.claim). The lease and the dedup
        keys are one statement; the rows set aside (rarely any) are marked right after, fenced
        by the lease (a node dying between leaves them leased: the next claim after the lease
        sets them aside again)."""
        now = self._time.now()
        lease = now + self._lease
        async with self._pool.connection() as conn:
            if dedup_seconds > 0:
                found = await conn.fetch(_CLAIM_DEDUP, destination, now, limit, lease,
                                         now - dedup_seconds)
            else:
                found = await conn.fetch(_CLAIM, destination, now, limit, lease)
        rows = sorted((tuple(row) for row in found), key=lambda row: row[0])
        expired = [row[0] for row in rows if row[7] < now]
        live = [row for row in rows if row[7] >= now]
        # Only a damaged database lacks an event's JSON; such a row must not hold back
        # every batch it lands in.
        broken = [row[0] for row in live if row[9] is None]
        live = [row for row in live if row[9] is not None]
        duplicates: dict[int, int] = {}
        if expired or broken or not all(row[11] for row in live):
            async with self._pool.transaction() as conn:
                if expired:
                    await conn.execute(_DEAD + _LEASED, "expired", now, _EXPIRED_ERROR, expired,
                                       lease)
                if broken:
                    await conn.execute(_DEAD + _LEASED, "invalid", now, "the event JSON is "
                                       "missing from the payloads table", broken, lease)
                if not all(row[11] for row in live):
                    duplicates = await _set_aside_duplicates(conn, [row[0] for row in live], now,
                                                             lease)
        return Claim(
            rows=[_claimed(row[:11], self._time) for row in live if row[0] not in duplicates],
            expired=len(expired), duplicates=len(duplicates), broken=len(broken),
        )

    async def finish(self, rows: Sequence[ClaimedRow], state: str = "delivered") -> int:
        return await self._acknowledge(
            rows, "state = $4, updated_at = $3, attempts = attempts + 1, last_error = NULL",
            state)

    async def retry_later(self, rows: Sequence[ClaimedRow], delay: float, error: str) -> int:
        return await self._acknowledge(
            rows, "state = 'pending', available_at = $3::float8 + $4::float8, updated_at = $3, "
            "attempts = attempts + 1, last_error = $5", float(delay), _text(error))

    async def release(self, rows: Sequence[ClaimedRow]) -> int:
        return await self._acknowledge(
            rows, "state = 'pending', available_at = $3, updated_at = $3")

    async def dead_letter(
        self, rows: Sequence[ClaimedRow], reason: str, error: str, fbtrace_id: str | None
    ) -> int:
        return await self._acknowledge(
            rows, "state = 'dead', reason = $4, updated_at = $3, last_error = $5, "
            "fbtrace_id = $6, attempts = attempts + 1", reason, _text(error),
            fbtrace_id and _text(fbtrace_id))

    async def _acknowledge(self, rows: Sequence[ClaimedRow], assignments: str,
                           *values: object) -> int:
        """One fenced UPDATE per lease (rows of one claim share it); how many were ours.
        In `assignments`, $3 is now and `values` are $4 onwards. Rows of one claim (the usual
        case) take one statement, committed on its own: no BEGIN and COMMIT round trips."""
        if not rows:
            return 0
        now = self._time.now()
        sql = f"UPDATE outbox SET {assignments}{_FENCE}"
        groups = [(self._time.to_server(lease), [row.id for row in group])
                  for lease, group in groupby(sorted(rows, key=_lease), key=_lease)]
        if len(groups) == 1:
            [(lease, ids)] = groups
            async with self._pool.connection() as conn:
                return touched(await conn.execute(sql, lease, ids, now, *values))
        ours = 0
        async with self._pool.transaction() as conn:
            for lease, ids in groups:
                ours += touched(await conn.execute(sql, lease, ids, now, *values))
        return ours

    async def retry_now(self, destination: str) -> int:
        """Make the rows of `destination` waiting out a retry's backoff due now (its platform
        answers again after an outage); wake its relays on every node. Leased rows are left
        alone."""
        async with self._pool.transaction() as conn:
            changed = touched(await conn.execute(_RETRY_NOW, self._time.now(), destination))
            if changed:
                await conn.execute(NOTIFY, [destination])
        if changed:
            self._wakeups[destination].set()
        return changed

    async def expire(self, destination: str, reason: str = "expired") -> int:
        """Dead-letter queued rows of `destination` past their expiry."""
        async with self._pool.connection() as conn:
            return touched(await conn.execute(_EXPIRE, reason, self._time.now(), _EXPIRED_ERROR,
                                             destination))

    # -- readiness -----------------------------------------------------------------------------
    async def write_problem(self) -> str | None:
        """None when a transaction that writes can commit now, else why not (readiness).

        The probe rewrites one row in its own transaction; probes asked for while one runs
        share it."""
        if self._closed:
            return "the outbox is closing"
        return await self._readiness.problem()

    async def _write_probe(self) -> None:
        async with self._pool.transaction() as conn:
            await conn.execute(PROBE)


async def _count_drops(conn: Any, drops: Drops) -> None:
    if not drops:
        return
    # Sorted: two nodes upserting the same hours lock the rows in one order (no deadlock).
    keys = sorted(drops)
    await conn.execute(_COUNT_DROPS, [k[0] for k in keys], [k[1] for k in keys],
                       [k[2] for k in keys], [k[3] for k in keys], [drops[k] for k in keys])


async def _set_aside_duplicates(
    conn: Any, row_ids: list[int], now: float, lease: float
) -> dict[int, int]:
    """Mark the claimed rows that do not own their key (the claim's statement proposed them)
    as duplicates of the row that does; return {row id: owner}."""
    found = await conn.fetch(_LOSERS, row_ids)
    losers: dict[int, int] = {int(row_id): int(owner) for row_id, owner in found}
    if losers:
        await conn.execute(_DUPLICATES, now, list(losers), list(losers.values()), lease)
    return losers
