"""Every row as people see it (`rows`, `counts`, `changes`): its state follows from its exception
row if it has one, else from the batch of its destination that covers its event, else from the
destination's cursor. Built inside one read transaction (a consistent snapshot)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson

from ..types import OutboxRow
from .batches import Batch, covering
from .routes import Event

__all__ = ["RowView"]

_EXCEPTION_COLUMNS = ("id, state, attempts, available_at, updated_at, last_error, reason, "
                      "fbtrace_id")


class RowView:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._claimed = {name: int(claimed) for name, claimed in conn.execute(
            "SELECT destination, claimed FROM cursors")}
        self._last: dict[str, Batch] = {}  # per destination, the batch found last

    def _covering(self, destination: str, event: int) -> Batch | None:
        """The batch covering `event` (rows are asked for by id: the last one mostly does)."""
        last = self._last.get(destination)
        if last is not None and last.first <= event <= last.last:
            return last
        found = covering(self._conn, destination, event)
        if found is not None:
            self._last[destination] = found
        return found

    def rows(self, events: Iterable[Event]) -> list[OutboxRow]:
        """The rows of these events, by id."""
        events = list(events)
        if not events:
            return []
        ids = orjson.dumps([e.id + i for e in events for i in range(len(e.routes))]).decode()
        exceptions = {int(fields[0]): fields for fields in self._conn.execute(
            f"SELECT {_EXCEPTION_COLUMNS} FROM exceptions "
            "WHERE id IN (SELECT value FROM json_each(?))", (ids,))}
        return [self._row(event, index, exceptions.get(event.id + index))
                for event in events for index in range(len(event.routes))]

    def _row(self, event: Event, index: int, exception: tuple[Any, ...] | None) -> OutboxRow:
        route = event.routes[index]
        created = event.created_at
        state, attempts, available, updated = route.state, 0, created, created
        error: str | None = route.note
        reason: str | None = None
        trace: str | None = None
        if exception is not None:
            _, state, attempts, available, updated, error, reason, trace = exception
        elif route.state == "pending":
            batch = self._covering(route.destination, event.id)
            if batch is None:
                if event.id <= self._claimed.get(route.destination, 0):
                    state, attempts = "delivered", 1  # its batch was pruned
            elif batch.state == "done" or event.id in batch.settled:
                state, attempts, available = "delivered", 1, batch.lease
                updated = batch.settled.get(event.id, batch.updated_at)
            else:
                state, available = batch.state, batch.lease
                updated = batch.claimed_at if batch.state == "inflight" else batch.updated_at
        return OutboxRow(
            id=event.id + index, destination=route.destination, state=str(state),
            pixel_id=route.pixel_id, test_event_code=route.test_event_code,
            event_name=event.event_name, event_id=event.event_id, event_time=event.event_time,
            expires_at=route.expires_at, attempts=int(attempts), created_at=created,
            updated_at=float(updated), available_at=float(available), last_error=error,
            reason=reason, fbtrace_id=trace,
            rule_set=event.rule_set, request_fields=route.request_fields,
            payload=event.payload, context=event.context,
        )
