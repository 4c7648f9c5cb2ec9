"""Events and their routes: how the entries of one commit become `events` rows, and back.

Ingest hands the outbox one entry per destination of an event, all with the same payload. Those
that share everything but their route (destination, pixel id, test code, request fields,
expiry, state, note) become one `events` row, the payload stored once; a destination appears
once per event, so (destination, event) names a row.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import orjson

from ..types import OutboxEntry

__all__ = [
    "EVENT_COLUMNS",
    "Event",
    "Route",
    "by_id",
    "destinations_of",
    "event",
    "events",
    "group",
    "insert_events",
    "last_row_id",
    "needle",
]

_INSERT = """
INSERT INTO events (id, waiting, routes, event_name, event_id, event_time, rule_set, created_at,
                    context, payload)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_NEXT_ID = "SELECT next FROM row_ids WHERE id = 1"
_SET_NEXT_ID = "UPDATE row_ids SET next = ? WHERE id = 1"
_STORED = ("INSERT INTO cursors (destination, stored) VALUES (?, ?) "
           "ON CONFLICT (destination) DO UPDATE SET stored = stored + excluded.stored")
EVENT_COLUMNS = ("id, waiting, routes, event_name, event_id, event_time, rule_set, created_at, "
                 "context, payload")


class Route(NamedTuple):
    destination: str
    pixel_id: str
    test_event_code: str
    request_fields: str
    expires_at: float
    state: str  # pending (relayed), or unrouted | invalid (kept for inspection only)
    note: str | None

    @classmethod
    def decode(cls, fields: list[Any]) -> Route:
        d, pixel, test, request_fields, expires, state, note = fields
        return cls(d, pixel, test, request_fields, _INF if expires is None else expires, state,
                   note)


_INF = float("inf")


class Event:
    """An `events` row; its routes are decoded when asked for (a claim needs one)."""

    __slots__ = ("_routes", "_waiting", "context", "created_at", "event_id", "event_name",
                 "event_time", "id", "payload", "raw_routes", "rule_set")

    def __init__(self, fields: Sequence[Any]) -> None:
        (id_, self._waiting, self.raw_routes, self.event_name, self.event_id, event_time,
         self.rule_set, created, context, payload) = fields
        self.id, self.event_time, self.created_at = int(id_), int(event_time), float(created)
        self.context, self.payload = bytes(context or b""), bytes(payload)
        self._routes: list[Route] | None = None

    @property
    def routes(self) -> list[Route]:
        if self._routes is None:
            self._routes = [Route.decode(fields) for fields in orjson.loads(self.raw_routes)]
        return self._routes

    def route(self, destination: str) -> tuple[int, Route] | None:
        """The row id and route of `destination`, if the event waits for it (pending routes
        come first, in the order of `waiting`)."""
        waiting = self._waiting.split()
        if destination not in waiting:
            return None
        index = waiting.index(destination)
        if self._routes is not None:
            return self.id + index, self._routes[index]
        return self.id + index, Route.decode(orjson.loads(self.raw_routes)[index])


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
        # Pending routes first, in the order of `waiting`: a route is found from it alone.
        members.sort(key=lambda e: e.state != "pending")
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


def last_row_id(conn: sqlite3.Connection) -> int:
    """The highest row id handed out yet (0 before the first): ids are never reused."""
    [(next_id,)] = conn.execute(_NEXT_ID).fetchall()
    return int(next_id) - 1


def event(fields: Sequence[Any]) -> Event:
    """An Event from a row of EVENT_COLUMNS."""
    return Event(fields)


def events(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()
           ) -> Iterator[Event]:
    """Events a query selecting EVENT_COLUMNS returns."""
    for fields in conn.execute(sql, params):
        yield event(fields)


def destinations_of(conn: sqlite3.Connection, row_ids: Sequence[int]
                    ) -> dict[int, tuple[int, str]]:
    """For each row id of a pending route, its event's id and its destination (absent: no
    such row, or one stored finished)."""
    if not row_ids:
        return {}
    wanted = sorted(set(row_ids))
    found: dict[int, tuple[int, str]] = {}
    if wanted[-1] - wanted[0] < 4 * len(wanted):  # one batch's rows: read its events in a row
        [(start,)] = conn.execute("SELECT MAX(id) FROM events WHERE id <= ?",
                                  (wanted[0],)).fetchall()
        stored = conn.execute("SELECT id, waiting FROM events WHERE id BETWEEN ? AND ? "
                              "ORDER BY id", (start or 0, wanted[-1])).fetchall()
        starts = [event_id for event_id, _ in stored]
        for row_id in wanted:
            at = bisect.bisect_right(starts, row_id) - 1
            if at >= 0:
                _found(found, row_id, *stored[at])
        return found
    for row_id, event_id, waiting in conn.execute(
            "SELECT j.value, e.id, e.waiting FROM json_each(?) AS j CROSS JOIN events AS e "
            "ON e.id = (SELECT MAX(id) FROM events WHERE id <= j.value)",
            (orjson.dumps(wanted).decode(),)):
        _found(found, row_id, event_id, waiting)
    return found


def _found(found: dict[int, tuple[int, str]], row_id: int, event_id: int, waiting: str) -> None:
    names = waiting.split()
    if row_id - event_id < len(names):
        found[row_id] = (event_id, names[row_id - event_id])


def by_id(conn: sqlite3.Connection, event_ids: Sequence[int]) -> dict[int, Event]:
    """The events of these ids (those that exist)."""
    ids = orjson.dumps(sorted(set(event_ids))).decode()
    return {e.id: e for e in events(
        conn, f"SELECT {EVENT_COLUMNS} FROM events WHERE id IN (SELECT value FROM json_each(?))",
        (ids,))}
