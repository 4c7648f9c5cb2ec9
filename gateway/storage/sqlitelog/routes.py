"""Events and their routes: how the entries of one commit become `events` rows, and back.

Ingest hands the outbox one entry per destination of an event, all with the same payload. Those
that share everything but their route (destination, pixel id, test code, request fields,
expiry, state, note) become one `events` row, the payload stored once; a destination appears
once per event, so (destination, event) names a row.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import orjson

from ..types import OutboxEntry

__all__ = ["EVENT_COLUMNS", "Event", "Route", "by_id", "event", "events", "group", "insert_events",
           "needle", "routes_of"]

_INSERT = """
INSERT INTO events (id, waiting, routes, event_name, event_id, event_time, rule_set, created_at,
                    context, payload)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_NEXT_ID = "SELECT next FROM row_ids WHERE id = 1"
_SET_NEXT_ID = "UPDATE row_ids SET next = ? WHERE id = 1"
_STORED = ("INSERT INTO cursors (destination, stored) VALUES (?, ?) "
           "ON CONFLICT (destination) DO UPDATE SET stored = stored + excluded.stored")
EVENT_COLUMNS = ("id, routes, event_name, event_id, event_time, rule_set, created_at, context, "
                 "payload")


class Route(NamedTuple):
    destination: str
    pixel_id: str
    test_event_code: str
    request_fields: str
    expires_at: float
    state: str  # pending (relayed), or unrouted | invalid (kept for inspection only)
    note: str | None


class Event(NamedTuple):
    id: int
    routes: list[Route]
    event_name: str
    event_id: str
    event_time: int
    rule_set: str
    created_at: float
    context: bytes
    payload: bytes

    def route(self, destination: str) -> tuple[int, Route] | None:
        """The row id and route of `destination`, if the event waits for it."""
        for index, route in enumerate(self.routes):
            if route.destination == destination and route.state == "pending":
                return self.id + index, route
        return None


def needle(destination: str) -> str:
    """What `instr(waiting, ?)` looks for (destination names hold no spaces)."""
    return f" {destination} "


def _same_event(a: OutboxEntry, b: OutboxEntry) -> bool:
    return (a.payload == b.payload and a.context == b.context and a.event_id == b.event_id
            and a.event_name == b.event_name and a.event_time == b.event_time
            and a.rule_set == b.rule_set)


def group(entries: Sequence[OutboxEntry]) -> list[list[OutboxEntry]]:
    """Consecutive entries of one event (one per destination) together."""
    groups: list[list[OutboxEntry]] = []
    for entry in entries:
        last = groups[-1] if groups else None
        if (last is not None and _same_event(last[0], entry)
                and all(e.destination != entry.destination for e in last)):
            last.append(entry)
        else:
            groups.append([entry])
    return groups


def _route(entry: OutboxEntry) -> list[Any]:
    expires = None if entry.expires_at == float("inf") else entry.expires_at
    return [entry.destination, entry.pixel_id, entry.test_event_code, entry.request_fields,
            expires, entry.state, entry.note]


def insert_events(conn: sqlite3.Connection, entries: Sequence[OutboxEntry], now: float) -> None:
    """Insert the entries as events (inside the group commit's transaction). Row ids come from
    `row_ids` under the write lock, so they stay ours with other processes on the file."""
    [(first,)] = conn.execute(_NEXT_ID).fetchall()
    rows, next_id, waiting_for = [], int(first), Counter[str]()
    for members in group(entries):
        head = members[0]
        waiting = [e.destination for e in members if e.state == "pending"]
        if any(" " in name for name in waiting):
            raise ValueError("destination names hold no spaces")  # see needle()
        waiting_for.update(waiting)
        rows.append((next_id, f" {' '.join(waiting)} " if waiting else "",
                     orjson.dumps([_route(e) for e in members]), head.event_name,
                     head.event_id, head.event_time, head.rule_set, now, head.context,
                     head.payload))
        next_id += len(members)
    conn.executemany(_INSERT, rows)
    conn.execute(_SET_NEXT_ID, (next_id,))
    conn.executemany(_STORED, sorted(waiting_for.items()))


def _routes(raw: bytes | str) -> list[Route]:
    return [Route(d, pixel, test, fields, float("inf") if expires is None else expires,
                  state, note)
            for d, pixel, test, fields, expires, state, note in orjson.loads(raw)]


def event(fields: Sequence[Any]) -> Event:
    """An Event from a row of EVENT_COLUMNS."""
    id_, routes, name, event_id, event_time, rule_set, created, context, payload = fields
    return Event(int(id_), _routes(routes), name, event_id, int(event_time), rule_set,
                 float(created), bytes(context or b""), bytes(payload))


def events(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()
           ) -> Iterator[Event]:
    """Events a query selecting EVENT_COLUMNS returns."""
    for fields in conn.execute(sql, params):
        yield event(fields)


def routes_of(conn: sqlite3.Connection, row_ids: Sequence[int]) -> dict[int, tuple[int, Route]]:
    """For each row id, its event's id and its route (absent: no such row)."""
    if not row_ids:
        return {}
    ids = orjson.dumps(sorted(set(row_ids))).decode()
    found: dict[int, tuple[int, Route]] = {}
    for row_id, event_id, raw in conn.execute(
            "SELECT j.value, e.id, e.routes FROM json_each(?) AS j CROSS JOIN events AS e "
            "ON e.id = (SELECT MAX(id) FROM events WHERE id <= j.value)", (ids,)):
        routes = _routes(raw)
        if row_id - event_id < len(routes):
            found[int(row_id)] = (int(event_id), routes[row_id - event_id])
    return found


def by_id(conn: sqlite3.Connection, event_ids: Sequence[int]) -> dict[int, Event]:
    """The events of these ids (those that exist)."""
    ids = orjson.dumps(sorted(set(event_ids))).decode()
    return {e.id: e for e in events(
        conn, f"SELECT {EVENT_COLUMNS} FROM events WHERE id IN (SELECT value FROM json_each(?))",
        (ids,))}
