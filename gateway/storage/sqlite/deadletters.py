"""Dead letters in SQL: the filter as a WHERE clause, the listing and the replay."""

from __future__ import annotations

from typing import Any

from ..types import DeadLetterFilter

__all__ = ["list_query", "replay_query", "where"]

_COLUMNS = ("id, destination, pixel_id, event_name, event_id, reason, last_error, fbtrace_id, "
            "attempts, created_at, updated_at")


def where(selection: DeadLetterFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = ["state = 'dead'"]
    params: list[Any] = []
    if selection.destination:
        clauses.append("destination = ?")
        params.append(selection.destination)
    if selection.reason:
        clauses.append("reason = ?")
        params.append(selection.reason)
    if selection.ids:
        clauses.append(f"id IN ({','.join('?' * len(selection.ids))})")
        params.extend(selection.ids)
    return " AND ".join(clauses), params


def list_query(selection: DeadLetterFilter, limit: int) -> tuple[str, list[Any]]:
    clause, params = where(selection)
    return (f"SELECT {_COLUMNS} FROM outbox WHERE {clause} ORDER BY id DESC LIMIT ?",
            [*params, limit])


def replay_query(selection: DeadLetterFilter, now: float,
                 table: str = "outbox") -> tuple[str, list[Any]]:
    """Put dead letters back in the queue, as if new (e.g. after fixing a token); `table`
    holds them, with the columns of the outbox table that this names."""
    clause, params = where(selection)
    return (f"UPDATE {table} SET state = 'pending', reason = NULL, attempts = 0, "
            f"available_at = ?, updated_at = ? WHERE {clause}", [now, now, *params])
