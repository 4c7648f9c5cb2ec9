"""A claim, as one transaction on the log: exception rows that are due first, then batches that
may be claimed again (their lease ran out, or they were given back whole), then the events
after the destination's cursor, as a new batch. In the same step, rows past their expiry become
dead letters and repeats of an event claimed within the dedup window duplicates (both are
exception rows)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import orjson

from ..sqlite.dedup import losers
from ..types import Claim, ClaimedRow
from .batches import Batch, advance, due, excepted, members
from .routes import EVENT_COLUMNS, Event, Route, by_id, events, needle
from .schema import QUEUED

__all__ = ["EXCEPTION", "EXPIRED_ERROR", "claim", "new_batch"]

EXPIRED_ERROR = "past the platform's time window for this event"
EXCEPTION = ("INSERT INTO exceptions (id, event, destination, state, attempts, expires_at, "
             "available_at, updated_at, last_error, reason, fbtrace_id) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_DUE = f"""
UPDATE exceptions SET state = 'inflight', available_at = ?, updated_at = ?
WHERE id IN (
    SELECT id FROM exceptions WHERE destination = ? AND {QUEUED} AND available_at <= ?
    ORDER BY available_at LIMIT ?
)
RETURNING id, event, attempts
"""
# A duplicate's owner lost its claim on the key if it waits again or was refused.
_OWNER_STATE = "(SELECT state FROM exceptions WHERE id = dedup.row_id)"


@dataclass
class _Candidate:
    row_id: int
    event: Event
    route: Route
    attempts: int
    source: str  # exception | batch (claimed again) | fresh (after the cursor)
    batch: Batch | None = None  # of a batch row


def claim(conn: sqlite3.Connection, destination: str, limit: int, now: float, lease: float,
          window: float) -> Claim:
    """Lease up to `limit` rows of `destination` until `lease` (see the module docstring)."""
    broken: list[int] = []
    found = _exceptions(conn, destination, limit, now, lease, broken)
    batches: list[tuple[Batch, bool]] = []  # (batch, whether it is new)
    found += _batches(conn, destination, limit - len(found), now, lease, batches)
    reached, fresh = _fresh(conn, destination, limit - len(found))
    found += fresh
    expired = [c for c in found if c.route.expires_at < now]
    live = [c for c in found if c.route.expires_at >= now]
    lost = losers(conn, destination, [(c.row_id, c.route.pixel_id, c.route.test_event_code,
                                       c.event.event_name, c.event.event_id) for c in live],
                  now, window, owner_state=_OWNER_STATE)
    for c in expired:
        _set_aside(conn, c, now, "dead", EXPIRED_ERROR, "expired")
    for c in live:
        if c.row_id in lost:
            _set_aside(conn, c, now, "duplicate", f"duplicate of row {lost[c.row_id]}", None)
    if broken:
        conn.execute("UPDATE exceptions SET state = 'dead', reason = 'invalid', updated_at = ?, "
                     "last_error = 'the event is missing from the events table' "
                     "WHERE id IN (SELECT value FROM json_each(?))",
                     (now, orjson.dumps(broken).decode()))
    sent = [c for c in live if c.row_id not in lost]
    for batch, new in batches:
        if new:
            batch.insert(conn)
        else:
            batch.save(conn)
    if reached is not None:
        size = sum(1 for c in sent if c.source == "fresh")
        new_batch(conn, destination, reached, size, now, lease)
    if any(batch.state == "done" for batch, _ in batches):
        advance(conn, destination)
    return Claim(
        rows=sorted((_claimed(c, lease) for c in sent), key=lambda row: row.id),
        expired=len(expired), duplicates=len(lost), broken=len(broken),
    )


def _claimed(c: _Candidate, lease: float) -> ClaimedRow:
    return ClaimedRow(c.row_id, c.route.pixel_id, c.route.test_event_code, c.event.event_name,
                      c.event.event_id, c.attempts, lease, c.route.expires_at,
                      c.route.request_fields, c.event.payload, c.event.context)


def _exceptions(conn: sqlite3.Connection, destination: str, limit: int, now: float,
                lease: float, broken: list[int]) -> list[_Candidate]:
    """Exception rows that are due (retries, rows given back alone, replayed dead letters,
    leases run out), leased."""
    if limit <= 0:
        return []
    rows = conn.execute(_DUE, (lease, now, destination, now, limit)).fetchall()
    found = by_id(conn, [event for _, event, _ in rows])
    result = []
    for row_id, event_id, attempts in rows:
        event = found.get(event_id)
        if event is None or not 0 <= row_id - event.id < len(event.routes):
            broken.append(row_id)  # only a damaged file gets here
            continue
        result.append(_Candidate(row_id, event, event.routes[row_id - event.id], attempts,
                                 "exception"))
    return result


def _batches(conn: sqlite3.Connection, destination: str, room: int, now: float, lease: float,
             touched: list[tuple[Batch, bool]]) -> list[_Candidate]:
    """Rows of batches whose lease ran out or that were given back, leased again (a batch
    with more rows than `room` is split: its first rows go, the rest stays due)."""
    result: list[_Candidate] = []
    for batch in due(conn, destination, now):
        if room <= 0:
            break
        waiting = members(conn, batch)
        taken = waiting[:room]
        if len(waiting) > room:
            cut = taken[-1].id
            part = Batch(destination, cut, batch.first, 0, "inflight", lease, now, now,
                         {e: at for e, at in batch.settled.items() if e <= cut})
            part.size = len(taken) + len(part.settled)
            batch.first, batch.size = cut + 1, batch.size - part.size
            batch.settled = {e: at for e, at in batch.settled.items() if e > cut}
            touched += [(batch, False), (part, True)]
            batch = part
        else:
            batch.state, batch.lease, batch.claimed_at, batch.updated_at = (
                "inflight", lease, now, now)
            if not waiting:  # nothing left in it (cannot happen, but must not stick)
                batch.state = "done"
            touched.append((batch, False))
        for event in taken:
            row = event.route(destination)
            assert row is not None  # members() wait for the destination
            result.append(_Candidate(row[0], event, row[1], 0, "batch", batch))
        room -= len(taken)
    return result


def _fresh(conn: sqlite3.Connection, destination: str, room: int
           ) -> tuple[int | None, list[_Candidate]]:
    """The destination's rows after its cursor: how far the new batch reaches (None: no new
    batch) and its rows."""
    if room <= 0:
        return None, []
    cursor = conn.execute("SELECT claimed FROM cursors WHERE destination = ?",
                          (destination,)).fetchone()
    if cursor is None:
        return None, []  # nothing was ever stored for it
    claimed = after = int(cursor[0])
    taken: list[Event] = []
    reached: int | None = None
    passed = 0  # its rows the new batch covers, set aside before or not
    while len(taken) < room:
        asked = room - len(taken)
        chunk = list(events(conn, f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? "
                            "AND instr(waiting, ?) ORDER BY id LIMIT ?",
                            (after, needle(destination), asked)))
        if chunk:
            skip = excepted(conn, destination, chunk[0].id, chunk[-1].id)
            taken += [e for e in chunk if e.id not in skip]
            after = chunk[-1].id
            passed += len(chunk)
        if len(chunk) < asked:
            # The end of the log: the batch covers every event up to it, so the next claim
            # (and next_due) starts after events of other destinations.
            [(end,)] = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchall()
            reached = max(int(end), claimed)
            break
    if reached is None:
        reached = taken[-1].id
    if reached == claimed:
        return None, []
    conn.execute("UPDATE cursors SET passed = passed + ? WHERE destination = ?",
                 (passed, destination))
    result = []
    for event in taken:
        row = event.route(destination)
        assert row is not None
        result.append(_Candidate(row[0], event, row[1], 0, "fresh"))
    return reached, result


def new_batch(conn: sqlite3.Connection, destination: str, reached: int, size: int,
              now: float, lease: float) -> None:
    """The destination's batch of events after its cursor up to `reached` (`size` rows handed
    out; none: done at once), and the cursor moved to it."""
    [(claimed,)] = conn.execute("SELECT claimed FROM cursors WHERE destination = ?",
                                (destination,)).fetchall()
    Batch(destination, reached, int(claimed) + 1, size, "inflight" if size else "done", lease,
          now, now).insert(conn)
    conn.execute("UPDATE cursors SET claimed = ? WHERE destination = ?", (reached, destination))
    if not size:
        advance(conn, destination)


def _set_aside(conn: sqlite3.Connection, c: _Candidate, now: float, state: str, error: str,
               reason: str | None) -> None:
    """Make a claimed row dead or a duplicate instead of sending it."""
    if c.source == "exception":
        conn.execute("UPDATE exceptions SET state = ?, reason = ?, updated_at = ?, "
                     "last_error = ? WHERE id = ?", (state, reason, now, error, c.row_id))
        return
    conn.execute(EXCEPTION, (c.row_id, c.event.id, c.route.destination, state, c.attempts,
                             c.route.expires_at, now, now, error, reason, None))
    if c.batch is not None:
        c.batch.settle([c.event.id], now)
