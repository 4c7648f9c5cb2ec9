"""What goes into and comes out of an outbox, whatever engine stores it.

Row states
- pending -> inflight (claimed under a lease) -> delivered | dry_run
- inflight -> pending (retry later, or given back at shutdown / on a paused destination)
- inflight -> duplicate: the same (pixel, event_name, event_id) already went to this destination
  within the dedup window
- pending | inflight -> dead, with `reason`: invalid (the platform refused the event;
  `last_error` holds its message and `fbtrace_id` Meta's trace id), expired (past the platform's
  window, e.g. Meta's 7 / 62 days), or token_revoked (expired while the destination's token
  was refused)
- unrouted (no destination accepts the pixel) and invalid (fails the type's rules at ingest)
  rows are written that way and only kept for inspection.
Finished rows (delivered, dry_run, duplicate, unrouted, invalid) are pruned after the retention
period; dead letters stay until replayed or deleted by a person.

Events a rule drops get no row: only a count per hour, rule, source and event name
(`DropCount`), pruned with the finished rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "DEAD_REASONS", "FINISHED_STATES", "OPEN_STATES", "QUEUED_STATES", "STATES", "Claim",
    "ClaimedRow", "ConsoleRecord", "DeadLetter", "DeadLetterFilter", "DropCount", "LiveEvent",
    "OutboxEntry", "OutboxRow", "ProcessReport", "QueueDepth", "StoreSize", "drop_hour",
]

QUEUED_STATES = ("pending", "inflight")
FINISHED_STATES = ("delivered", "dry_run", "duplicate", "unrouted", "invalid")
OPEN_STATES = (*QUEUED_STATES, "dead")  # what /status and /metrics count
STATES = (*QUEUED_STATES, *FINISHED_STATES, "dead")
DEAD_REASONS = ("invalid", "expired", "token_revoked")


@dataclass(frozen=True)
class OutboxEntry:
    """A row to write: the event as it will be relayed to one destination."""

    destination: str
    pixel_id: str
    test_event_code: str
    event_name: str
    event_id: str
    event_time: int
    payload: bytes  # the CAPI event as JSON
    expires_at: float = float("inf")
    state: str = "pending"
    note: str | None = None  # stored as the row's last_error (why it is unrouted or invalid)
    rule_set: str = ""
    request_fields: str = ""  # JSON object of top-level fields to send with the batch
    # A JSON object of per-event context some destination types need at send time (click ids,
    # vendor cookies, consent): stored with the payload, returned by claims, never interpreted
    # by the engine.
    context: bytes = b""


class ClaimedRow(NamedTuple):
    """A leased row as the claim returns it (a named tuple: a claim builds a thousand of these,
    and a frozen dataclass cost ~1.8 us each against ~0.2 us)."""

    id: int
    pixel_id: str
    test_event_code: str
    event_name: str
    event_id: str
    attempts: int
    lease: float  # the claim's lease expiry: fences acknowledgements
    expires_at: float = float("inf")
    request_fields: str = ""
    payload: bytes = b""
    context: bytes = b""


@dataclass
class Claim:
    """Rows to send, and how many were set aside instead."""

    rows: list[ClaimedRow] = field(default_factory=list)
    expired: int = 0
    duplicates: int = 0
    broken: int = 0  # rows without their event JSON, made dead letters


class StoreSize(NamedTuple):
    """How much the outbox holds, read without counting its queue (cheap at any size)."""

    bytes: int  # the engine's size on disk
    # The highest row id handed out yet. Ids are never reused, so a later last_id minus this
    # one bounds the rows written in between (PostgreSQL: but for commits still running).
    last_id: int


# -- the whole gateway, for the console (every serving process of every node on one store) ---
class ProcessReport(NamedTuple):
    """What one serving process last said of itself (its relay state, its counts per minute):
    `report` is its JSON, which the store keeps as it is; `seen_at` the store's clock when it
    was written."""

    process: str  # e.g. `host:pid`
    started_at: float
    seen_at: float
    report: bytes


class LiveEvent(NamedTuple):
    """One live event a process forwarded for the console's watchers elsewhere."""

    id: int  # ascending in the order of adding (a gap: a rolled-back or trimmed event)
    process: str  # the process that saw it
    event: bytes  # its JSON, as the event bus told it


class QueueDepth(NamedTuple):
    """How much the outbox holds, for backpressure."""

    rows: int  # rows waiting to be sent (pending or inflight), counted up to the caller's bound
    bytes: int  # the engine's size on disk
    last_id: int  # as StoreSize's, read before the count: the count is as of then or later


class DropCount(NamedTuple):
    """Events one rule dropped within one hour, by source and event name (nothing else of a
    dropped event is kept)."""

    hour: int  # Unix time of the hour's start (UTC)
    rule: str
    source: str  # browser | server
    event_name: str
    events: int  # how many it dropped


def drop_hour(moment: float) -> int:
    """The hour a drop at `moment` is counted in."""
    return int(moment // 3600) * 3600


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to list or replay (every one when empty)."""

    destination: str | None = None
    reason: str | None = None
    ids: tuple[int, ...] = ()


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


@dataclass(frozen=True)
class OutboxRow:
    """One stored row with its event, as people (the CLI) and tests look at it."""

    id: int
    destination: str
    state: str
    pixel_id: str
    test_event_code: str
    event_name: str
    event_id: str
    event_time: int
    expires_at: float
    attempts: int
    created_at: float
    updated_at: float
    available_at: float  # pending: next attempt; inflight: lease expiry
    last_error: str | None  # also the note of unrouted and invalid rows
    reason: str | None
    fbtrace_id: str | None
    rule_set: str
    request_fields: str
    payload: bytes | None  # None only in a damaged store
    context: bytes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ConsoleRecord:
    """Something the console created and the whole gateway shares through the store (a
    destination, an access key, a session): its kind, a name unique within the kind, its
    settings as JSON, and its secret as the caller encrypted it (never plaintext here)."""

    kind: str
    name: str
    body: str
    secret: bytes | None
    created_at: float
    updated_at: float
