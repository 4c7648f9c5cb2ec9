"""Retention on the log, by id range: events are deleted from the oldest up, each once all its
rows are finished (delivered, dry run, duplicate, unrouted, invalid) before the cut; dead
letters and rows still queued keep their event. A destination's delivered rows are the ones its
done batches cover up to its `acked` cursor: below the cursor, before the cut, a row without an
exception row is finished. Done batches below the cut go with them."""

from __future__ import annotations

import itertools
import sqlite3

import orjson

from ..types import FINISHED_STATES
from .routes import Route, event

__all__ = ["prune_chunk"]


def _delivered_up_to(conn: sqlite3.Connection, older_than: float) -> dict[str, int]:
    """Per destination, the event up to which its batches are done before the cut."""
    horizon = {}
    for destination, acked in conn.execute("SELECT destination, acked FROM cursors").fetchall():
        [(recent,)] = conn.execute(
            "SELECT MIN(first) FROM batches WHERE destination = ? AND last <= ? "
            "AND updated_at >= ?", (destination, acked, older_than)).fetchall()
        horizon[destination] = int(acked) if recent is None else int(recent) - 1
    return horizon


def prune_chunk(conn: sqlite3.Connection, after: int, older_than: float, chunk: int
                ) -> tuple[int, int, bool]:
    """Delete the finished events among the next `chunk` after event `after` stored before the
    cut; (rows deleted, the last event looked at, whether there may be more)."""
    horizon = _delivered_up_to(conn, older_than)
    # By id, which follows the time of storing: the first event stored since the cut ends the
    # scan (created_at has no index; reading on would read every newer event).
    found = conn.execute("SELECT id, waiting, routes, event_name, event_id, event_time, "
                         "rule_set, created_at, context, x'' FROM events WHERE id > ? "
                         "ORDER BY id LIMIT ?", (after, chunk)).fetchall()
    more = len(found) == chunk
    old = list(itertools.takewhile(lambda fields: fields[7] < older_than, found))
    if len(old) < len(found):
        found, more = old, False
    if not found:
        return 0, after, False
    first, last = found[0][0], found[-1][0]
    exceptions: dict[int, tuple[str, float]] = {
        int(row_id): (state, float(updated)) for row_id, state, updated in conn.execute(
            "SELECT id, state, updated_at FROM exceptions WHERE event BETWEEN ? AND ?",
            (first, last))}
    gone: list[int] = []
    rows = 0
    for fields in found:
        stored = event(fields)
        if all(_finished(stored.id + i, route, stored.id, exceptions, horizon, older_than)
               for i, route in enumerate(stored.routes)):
            gone.append(stored.id)
            rows += len(stored.routes)
    if gone:
        ids = orjson.dumps(gone).decode()
        conn.execute("DELETE FROM exceptions WHERE event IN (SELECT value FROM json_each(?))",
                     (ids,))
        conn.execute("DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))", (ids,))
    for destination, up_to in horizon.items():
        conn.execute("DELETE FROM batches WHERE destination = ? AND last <= ? AND last <= ? "
                     "AND state = 'done' AND updated_at < ?",
                     (destination, up_to, last, older_than))
    return rows, int(last), more


def _finished(row_id: int, route: Route, event_id: int,
              exceptions: dict[int, tuple[str, float]], horizon: dict[str, int],
              older_than: float) -> bool:
    if route.state != "pending":
        return True  # unrouted or invalid: finished when stored, before the cut
    if row_id in exceptions:
        state, updated = exceptions[row_id]
        return state in FINISHED_STATES and updated < older_than
    return event_id <= horizon.get(route.destination, 0)
