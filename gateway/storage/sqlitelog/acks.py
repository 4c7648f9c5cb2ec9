"""Acknowledgements on the log, fenced by the lease: a row of a batch is still the caller's
while the batch is leased with the row's lease and the row is not settled; an exception row
while it is inflight with that lease (as in the sqlite engine). A delivered batch row costs
nothing of its own: it is settled in its batch, and the batch (then the destination's cursor)
moves on once all its rows are. Any other outcome gives the row an exception row. Also the
sweeps: expiry of a paused destination's rows, and retries made due at once."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

import orjson

from ..types import ClaimedRow
from .batches import Batch, advance, covering, members, open_batches
from .claims import EXCEPTION, EXPIRED_ERROR, new_batch
from .routes import destinations_of, needle
from .schema import QUEUED

__all__ = ["Outcome", "acknowledge", "expire", "retry_now"]


class Outcome(NamedTuple):
    """What became of claimed rows: `state` delivered | dry_run | pending (retry later) |
    released (given back untried) | dead."""

    state: str
    delay: float = 0.0
    error: str | None = None
    reason: str | None = None
    fbtrace_id: str | None = None


# Exception rows: the same assignments as the sqlite engine's, fenced the same way.
_UPDATES = {
    "delivered": "state = 'delivered', updated_at = :now, attempts = attempts + 1, "
                 "last_error = NULL",
    "dry_run": "state = 'dry_run', updated_at = :now, attempts = attempts + 1, "
               "last_error = NULL",
    "pending": "state = 'pending', available_at = :now + :delay, updated_at = :now, "
               "attempts = attempts + 1, last_error = :error",
    "released": "state = 'pending', available_at = :now, updated_at = :now",
    "dead": "state = 'dead', reason = :reason, last_error = :error, fbtrace_id = :fbtrace_id, "
            "updated_at = :now, attempts = attempts + 1",
}
_FENCE = " WHERE id = :id AND state = 'inflight' AND available_at = :lease"
# The destination's rows after its cursor still waiting (stored pending, not set aside), found
# in SQL: the backlog may be millions of events. Parameters: the cursor, the destination's
# needle, the destination. A route's JSON is [destination, pixel id, test code, request fields,
# expiry (null: never), state, note].
_WAITING_AFTER = """
FROM events AS e, json_each(e.routes) AS r
WHERE e.id > ? AND instr(e.waiting, ?) AND r.value ->> 0 = ? AND r.value ->> 5 = 'pending'
    AND NOT EXISTS (SELECT 1 FROM exceptions AS x WHERE x.id = e.id + r.key)"""
# Those past their expiry (only they come back), and the first one's event.
_EXPIRED_AFTER = f"SELECT e.id + r.key, e.id, r.value ->> 4 {_WAITING_AFTER} AND r.value ->> 4 < ?"
_FIRST_WAITING = f"SELECT e.id {_WAITING_AFTER} ORDER BY e.id LIMIT 1"


def acknowledge(conn: sqlite3.Connection, rows: Sequence[ClaimedRow], outcome: Outcome,
                now: float) -> int:
    """Record `outcome` for the rows still the caller's; how many were."""
    ids = orjson.dumps([row.id for row in rows]).decode()
    exceptions = {int(row_id) for (row_id,) in conn.execute(
        "SELECT id FROM exceptions WHERE id IN (SELECT value FROM json_each(?))", (ids,))}
    values = {"now": now, "delay": outcome.delay, "error": outcome.error,
              "reason": outcome.reason, "fbtrace_id": outcome.fbtrace_id}
    ours = sum(conn.execute(f"UPDATE exceptions SET {_UPDATES[outcome.state]}{_FENCE}",
                            {**values, "id": row.id, "lease": row.lease}).rowcount
               for row in rows if row.id in exceptions)
    located = destinations_of(conn, [row.id for row in rows if row.id not in exceptions])
    batches: dict[tuple[str, int], Batch] = {}
    held: dict[tuple[str, int], dict[int, ClaimedRow]] = {}
    batch: Batch | None = None
    for row in rows:
        if row.id not in located:
            continue
        event, destination = located[row.id]
        if not (batch is not None and batch.destination == destination
                and batch.first <= event <= batch.last):  # rows of one batch come together
            batch = _batch(conn, batches, destination, event)
        if (batch is None or batch.state != "inflight" or batch.lease != row.lease
                or event in batch.settled):
            continue
        held.setdefault((batch.destination, batch.last), {})[event] = row
    for key, mine in held.items():
        batch = batches[key]
        ours += len(mine)
        if outcome.state == "released" and len(mine) == batch.unsettled:
            # Given back whole: the batch itself is due again.
            batch.state, batch.lease, batch.updated_at = "pending", now, now
        else:
            if outcome.state != "delivered":
                for event, row in mine.items():
                    _except(conn, row, event, batch.destination, outcome, now)
            batch.settle(mine, now)
        batch.save(conn)
    for destination in {batches[key].destination for key in held
                        if batches[key].state == "done"}:
        advance(conn, destination)
    return ours


def _batch(conn: sqlite3.Connection, cache: dict[tuple[str, int], Batch], destination: str,
           event: int) -> Batch | None:
    for (name, last), batch in cache.items():
        if name == destination and batch.first <= event <= last:
            return batch
    found = covering(conn, destination, event)
    if found is not None:
        cache[(destination, found.last)] = found
    return found


def _except(conn: sqlite3.Connection, row: ClaimedRow, event: int, destination: str,
            outcome: Outcome, now: float) -> None:
    """A batch row's outcome other than a delivery, as an exception row."""
    state = "pending" if outcome.state == "released" else outcome.state
    attempts = row.attempts + (0 if outcome.state == "released" else 1)
    available = now + outcome.delay if outcome.state == "pending" else now
    error = None if outcome.state in ("dry_run", "released") else outcome.error
    conn.execute(EXCEPTION, (row.id, event, destination, state, attempts, row.expires_at,
                             available, now, error, outcome.reason, outcome.fbtrace_id))


def retry_now(conn: sqlite3.Connection, destination: str, now: float) -> int:
    """Rows of `destination` waiting out a retry's backoff, due now (batches given back are)."""
    return int(conn.execute(
        f"UPDATE exceptions SET available_at = ? WHERE destination = ? AND {QUEUED} "
        "AND state = 'pending' AND available_at > ?", (now, destination, now)).rowcount)


def expire(conn: sqlite3.Connection, destination: str, reason: str, now: float) -> int:
    """Dead-letter the queued rows of `destination` past their expiry: exception rows, rows of
    open batches, and rows after the cursor."""
    count = int(conn.execute(
        "UPDATE exceptions SET state = 'dead', reason = ?, updated_at = ?, last_error = ? "
        f"WHERE destination = ? AND {QUEUED} AND expires_at < ?",
        (reason, now, EXPIRED_ERROR, destination, now)).rowcount)
    done = False
    for batch in open_batches(conn, destination):
        for event in members(conn, batch):
            found = event.route(destination)
            if found is not None and found[1].expires_at < now:
                _dead(conn, found[0], event.id, destination, found[1].expires_at, reason, now)
                batch.settle([event.id], now)
                count += 1
        batch.save(conn)
        done = done or batch.state == "done"
    if done:
        advance(conn, destination)
    cursor = conn.execute("SELECT claimed FROM cursors WHERE destination = ?",
                          (destination,)).fetchone()
    if cursor is None:
        return count
    expired = conn.execute(_EXPIRED_AFTER, (cursor[0], needle(destination), destination,
                                            now)).fetchall()
    for row_id, event_id, expires in expired:
        _dead(conn, row_id, event_id, destination, expires, reason, now)
    if expired:
        _pass_set_aside(conn, destination, int(cursor[0]), now)
    return count + len(expired)


def _pass_set_aside(conn: sqlite3.Connection, destination: str, claimed: int,
                    now: float) -> None:
    """Move the cursor over the rows after it that are all set aside (a long pause's expired
    rows), as one done batch, as a claim does with the rows it sets aside: claims and the
    oldest queued row then start after them instead of reading through them each time."""
    waiting = conn.execute(_FIRST_WAITING, (claimed, needle(destination),
                                            destination)).fetchone()
    if waiting is not None:
        end = int(waiting[0]) - 1
    else:
        [(last,)] = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events WHERE id > ? "
                                 "AND instr(waiting, ?)", (claimed, needle(destination)))
        end = int(last)
    if end <= claimed:
        return
    [(passed,)] = conn.execute("SELECT COUNT(*) FROM events WHERE id > ? AND id <= ? "
                               "AND instr(waiting, ?)", (claimed, end, needle(destination)))
    conn.execute("UPDATE cursors SET passed = passed + ? WHERE destination = ?",
                 (passed, destination))
    new_batch(conn, destination, end, 0, now, now)


def _dead(conn: sqlite3.Connection, row_id: int, event: int, destination: str,
          expires_at: float, reason: str, now: float) -> None:
    conn.execute(EXCEPTION, (row_id, event, destination, "dead", 0, expires_at, now, now,
                             EXPIRED_ERROR, reason, None))
