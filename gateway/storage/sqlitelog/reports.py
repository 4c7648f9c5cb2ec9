"""Reads for the relay's idle loop, backpressure, /status, /metrics and the CLI, each a function
of a connection inside one read transaction (a snapshot; never blocks a writer).

Queued rows of a destination are its exception rows that are pending or inflight, the unsettled
rows of its open batches, and its rows after its cursor: counting the last reads the events
after the cursor (the backlog), never the rows kept for inspection."""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any

from ..sqlite.deadletters import where
from ..types import OPEN_STATES, DeadLetter, DeadLetterFilter, OutboxRow
from .batches import excepted, open_batches
from .routes import EVENT_COLUMNS, by_id, events, needle
from .schema import QUEUED
from .view import RowView

__all__ = ["changes", "counts", "dead_letters", "next_due", "oldest_pending", "open_counts",
           "queue_depth", "rows"]

_CHUNK = 500


def _cursors(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """Per destination, its cursor and its rows after it (set aside or not)."""
    return {name: (int(claimed), int(stored) - int(passed))
            for name, claimed, stored, passed in conn.execute(
                "SELECT destination, claimed, stored, passed FROM cursors")}


def _fresh(conn: sqlite3.Connection, destination: str, claimed: int, after: int) -> int:
    """Rows of `destination` after its cursor (`after` of them) that no claim set aside."""
    if not after:
        return 0
    [(aside,)] = conn.execute("SELECT COUNT(*) FROM exceptions WHERE destination = ? "
                              "AND event > ?", (destination, claimed)).fetchall()
    return after - int(aside)


def _first_fresh(conn: sqlite3.Connection, destination: str, claimed: int) -> float | None:
    """When the oldest row of `destination` after its cursor was stored."""
    after = claimed
    while True:
        found = conn.execute("SELECT id, created_at FROM events WHERE id > ? "
                             "AND instr(waiting, ?) ORDER BY id LIMIT ?",
                             (after, needle(destination), _CHUNK)).fetchall()
        if not found:
            return None
        skip = excepted(conn, destination, found[0][0], found[-1][0])
        for event, created in found:
            if event not in skip:
                return float(created)
        after = found[-1][0]


def open_counts(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    counts: Counter[tuple[str, str]] = Counter()
    for destination, (claimed, after) in _cursors(conn).items():
        counts[(destination, "pending")] += _fresh(conn, destination, claimed, after)
    for batch in open_batches(conn):
        counts[(batch.destination, batch.state)] += batch.unsettled
    for destination, state, count in conn.execute(
            f"SELECT destination, state, COUNT(*) FROM exceptions WHERE {QUEUED} "
            "GROUP BY destination, state UNION ALL SELECT destination, 'dead', COUNT(*) "
            "FROM exceptions WHERE state = 'dead' GROUP BY destination"):
        counts[(destination, state)] += int(count)
    return {key: n for key, n in sorted(counts.items()) if n and key[1] in OPEN_STATES}


def queue_depth(conn: sqlite3.Connection) -> int:
    return sum(n for (_, state), n in open_counts(conn).items() if state != "dead")


def oldest_pending(conn: sqlite3.Connection) -> dict[str, float]:
    oldest: dict[str, float] = {}

    def seen(destination: str, created: float | None) -> None:
        if created is not None:
            oldest[destination] = min(created, oldest.get(destination, created))

    for destination, (claimed, after) in _cursors(conn).items():
        if after:
            seen(destination, _first_fresh(conn, destination, claimed))
    for batch in open_batches(conn):
        # Its oldest row still waiting: not settled, and not set aside since (an exception row).
        skip = excepted(conn, batch.destination, batch.first, batch.last) | set(batch.settled)
        for event, created in conn.execute(
                "SELECT id, created_at FROM events WHERE id BETWEEN ? AND ? "
                "AND instr(waiting, ?) ORDER BY id", (batch.first, batch.last,
                                                      needle(batch.destination))):
            if event not in skip:
                seen(batch.destination, float(created))
                break
    for destination, created in conn.execute(
            "SELECT x.destination, MIN(e.created_at) FROM exceptions AS x "
            f"JOIN events AS e ON e.id = x.event WHERE x.{QUEUED} GROUP BY x.destination"):
        seen(destination, float(created))
    return oldest


def next_due(conn: sqlite3.Connection, destination: str) -> float | None:
    due: list[float] = []
    [(retry,)] = conn.execute("SELECT MIN(available_at) FROM exceptions WHERE destination = ? "
                              f"AND {QUEUED}", (destination,)).fetchall()
    [(lease,)] = conn.execute("SELECT MIN(lease) FROM batches WHERE destination = ? "
                              "AND state <> 'done'", (destination,)).fetchall()
    due += [float(at) for at in (retry, lease) if at is not None]
    cursor = conn.execute("SELECT claimed, stored - passed FROM cursors WHERE destination = ?",
                          (destination,)).fetchone()
    if cursor is not None and cursor[1]:
        fresh = _first_fresh(conn, destination, cursor[0])
        due += [] if fresh is None else [fresh]
    return min(due) if due else None


# States a row only gets from its batch and cursor; any other is stored as it is, in the row's
# exception row or in its route (invalid, unrouted): found in SQL, not by reading every row.
_DERIVED_STATES = ("pending", "inflight", "delivered")
_EVENTS_IN_STATE = """
SELECT event FROM exceptions WHERE state = ?
UNION SELECT e.id FROM events AS e, json_each(e.routes) AS r WHERE r.value ->> 5 = ?
ORDER BY 1 {order}
"""


def rows(conn: sqlite3.Connection, state: str | None, limit: int | None,
         newest_first: bool) -> list[OutboxRow]:
    if state is not None and state not in _DERIVED_STATES:
        return _rows_in_state(conn, state, limit, newest_first)
    view = RowView(conn)
    found: list[OutboxRow] = []
    order, compare = ("DESC", "<") if newest_first else ("ASC", ">")
    after = None
    while limit is None or len(found) < limit:
        chunk = list(events(conn, f"SELECT {EVENT_COLUMNS} FROM events "
                            f"WHERE ? IS NULL OR id {compare} ? ORDER BY id {order} LIMIT ?",
                            (after, after, _CHUNK)))
        if not chunk:
            break
        made = sorted(view.rows(chunk), key=_row_id, reverse=newest_first)
        found += [row for row in made if state is None or row.state == state]
        after = chunk[-1].id
    return found if limit is None else found[:limit]


def _rows_in_state(conn: sqlite3.Connection, state: str, limit: int | None,
                   newest_first: bool) -> list[OutboxRow]:
    view = RowView(conn)
    wanted = [int(e) for (e,) in conn.execute(
        _EVENTS_IN_STATE.format(order="DESC" if newest_first else "ASC"), (state, state))]
    found: list[OutboxRow] = []
    for start in range(0, len(wanted), _CHUNK):
        if limit is not None and len(found) >= limit:
            break
        chunk = wanted[start:start + _CHUNK]
        stored = by_id(conn, chunk)
        made = view.rows(stored[e] for e in sorted(chunk) if e in stored)
        found += sorted((r for r in made if r.state == state), key=_row_id,
                        reverse=newest_first)
    return found if limit is None else found[:limit]


# Every route by destination, ingest state and side of the destination's cursor, counted in
# SQL: a route's JSON is [destination, ..., state (index 5), note].
_ROUTE_COUNTS = """
SELECT r.value ->> 0, r.value ->> 5, e.id <= COALESCE(c.claimed, 0), COUNT(*)
FROM events AS e, json_each(e.routes) AS r
LEFT JOIN cursors AS c ON c.destination = r.value ->> 0
GROUP BY 1, 2, 3
"""
# Exception rows exist only for routes stored pending: their counts move from the route's.
_EXCEPTION_COUNTS = """
SELECT x.destination, x.state, x.event <= COALESCE(c.claimed, 0), COUNT(*)
FROM exceptions AS x LEFT JOIN cursors AS c USING (destination)
GROUP BY 1, 2, 3
"""


def counts(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """Rows per destination and state, every row, for a person: counted in SQL over the
    events' routes and the exception rows (no row worked out in Python). A route stored
    pending without an exception row is pending after its destination's cursor, and up to it
    delivered unless an open batch still holds it."""
    totals: Counter[tuple[str, str]] = Counter()
    for destination, state, claimed, n in conn.execute(_ROUTE_COUNTS):
        if state != "pending":
            totals[(destination, state)] += n
        else:
            totals[(destination, "delivered" if claimed else "pending")] += n
    for destination, state, claimed, n in conn.execute(_EXCEPTION_COUNTS):
        totals[(destination, state)] += n
        totals[(destination, "delivered" if claimed else "pending")] -= n
    for batch in open_batches(conn):
        totals[(batch.destination, "delivered")] -= batch.unsettled
        totals[(batch.destination, batch.state)] += batch.unsettled
    return {key: n for key, n in sorted(totals.items()) if n}


def changes(conn: sqlite3.Connection, after_id: int, since: float, limit: int
            ) -> list[OutboxRow]:
    """Rows stored after `after_id`, and rows changed at or after `since`: the new events, the
    exception rows changed since, and the events of the batches changed since."""
    [(start,)] = conn.execute("SELECT MAX(id) FROM events WHERE id <= ?", (after_id,)).fetchall()
    wanted = {int(e) for (e,) in conn.execute("SELECT id FROM events WHERE id >= ?",
                                              (start if start is not None else after_id,))}
    wanted |= {int(e) for (e,) in conn.execute("SELECT event FROM exceptions "
                                               "WHERE updated_at >= ?", (since,))}
    changed = conn.execute("SELECT destination, first, last FROM batches WHERE updated_at >= ?",
                           (since,)).fetchall()
    for destination, first, last in changed:
        wanted |= {int(e) for (e,) in conn.execute(
            "SELECT id FROM events WHERE id BETWEEN ? AND ? AND instr(waiting, ?)",
            (first, last, needle(destination)))}
    found = RowView(conn).rows(sorted(by_id(conn, sorted(wanted)).values(), key=_event_id))
    changed = [r for r in found if r.id > after_id or r.updated_at >= since]
    return sorted(changed, key=lambda r: (r.updated_at, r.id))[:limit]


def _row_id(row: OutboxRow) -> int:
    return row.id


def _event_id(event: Any) -> int:
    return int(event.id)


def dead_letters(conn: sqlite3.Connection, selection: DeadLetterFilter, limit: int
                 ) -> list[DeadLetter]:
    clause, params = where(selection)
    found = conn.execute(
        "SELECT id, destination, reason, last_error, fbtrace_id, attempts, updated_at, event "
        f"FROM exceptions WHERE {clause} ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
    stored_events = by_id(conn, [row[7] for row in found])
    letters = []
    for row_id, destination, reason, error, trace, attempts, updated, event in found:
        stored = stored_events.get(event)
        if stored is None or not 0 <= row_id - event < len(stored.routes):
            continue
        route = stored.routes[row_id - event]
        letters.append(DeadLetter(row_id, destination, route.pixel_id, stored.event_name,
                                  stored.event_id, reason, error, trace, attempts,
                                  stored.created_at, updated))
    return letters
