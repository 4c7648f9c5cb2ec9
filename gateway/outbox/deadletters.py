"""Dead letters: events that cannot be delivered as they are, kept with their reason.

The same queries serve the CLI (`tag-gateway dead-letters`, on the SQLite file directly, safe
while the gateway runs) and the admin endpoint (through the running outbox).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DeadLetter", "DeadLetterFilter", "list_query", "replay_query"]

_COLUMNS = ("id, destination, pixel_id, event_name, event_id, reason, last_error, fbtrace_id, "
            "attempts, created_at, updated_at")


@dataclass(frozen=True)
class DeadLetterFilter:
    destination: str | None = None
    reason: str | None = None
    ids: tuple[int, ...] = ()

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["state = 'dead'"]
        params: list[Any] = []
        if self.destination:
            clauses.append("destination = ?")
            params.append(self.destination)
        if self.reason:
            clauses.append("reason = ?")
            params.append(self.reason)
        if self.ids:
            clauses.append(f"id IN ({','.join('?' * len(self.ids))})")
            params.extend(self.ids)
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class DeadLetter:
    id: int
    destination: str
    pixel_id: str
    event_name: str
    event_id: str
    reason: str | None
    last_error: str | None
    fbtrace_id: str | None
    attempts: int
    created_at: float
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_query(selection: DeadLetterFilter, limit: int) -> tuple[str, list[Any]]:
    where, params = selection.where()
    return (f"SELECT {_COLUMNS} FROM outbox WHERE {where} ORDER BY id DESC LIMIT ?",
            [*params, limit])


def replay_query(selection: DeadLetterFilter, now: float) -> tuple[str, list[Any]]:
    """Put dead letters back in the queue, as if new (e.g. after fixing a token)."""
    where, params = selection.where()
    return ("UPDATE outbox SET state = 'pending', reason = NULL, attempts = 0, "
            f"available_at = ?, updated_at = ? WHERE {where}", [now, now, *params])
