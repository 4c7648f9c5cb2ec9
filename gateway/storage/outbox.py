"""The `Outbox` protocol: everything ingest, the relay, the operator endpoints and the CLI ask
of a storage engine. Callers never see SQL or connections, only these methods and the types in
`types.py`.

Guarantees every engine keeps (tests/storage/test_conformance.py checks them):
- `enqueue` returns only once its rows are durable; rows arriving together may share one
  commit, and one bad entry never sinks the others sharing it.
- `claim` leases rows; a lease that runs out (its holder died) makes the rows claimable again.
- Acknowledgements (`finish`, `retry_later`, `release`, `dead_letter`) are fenced by the lease:
  a claim that outlived its lease cannot overwrite a newer outcome; each returns how many rows
  were still the caller's.
- A drop (`count_drop`) is counted in memory and committed with the next group commit, or on
  its own within about a second when no event comes: never one write per drop.
- What waiting may cure (a full disk, a database that is down) is raised as OutboxUnavailable,
  by any method: callers treat it as temporary.
- The whole gateway's view (process reports, watchers, live events) is kept apart from the
  queue and may be lost to a crash: each of its writes is one short transaction that never
  waits for the group commit, and its tables stay small (one row per process, a ring of live
  events trimmed at every add).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from .types import (
    Claim,
    ClaimedRow,
    ConsoleRecord,
    DeadLetter,
    DeadLetterFilter,
    DropCount,
    LiveEvent,
    OutboxEntry,
    OutboxRow,
    ProcessReport,
    QueueDepth,
    StoreSize,
)

__all__ = ["Outbox"]


class Outbox(Protocol):
    """A durable queue of events per destination, with dead letters and dedup."""

    @property
    def commits(self) -> int:
        """Transactions that stored ingested rows so far (group commit at work)."""
        ...

    # -- ingest --------------------------------------------------------------------------------
    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        """Return once `entries` are committed; OutboxUnavailable if they could not be
        (or the outbox is closing)."""
        ...

    def count_drop(self, rule: str, source: str, event_name: str) -> None:
        """Count one event `rule` dropped (it gets no row), in the hour it is counted at; durable
        with the next commit (see the guarantees above) and at `close`."""
        ...

    # -- relay ---------------------------------------------------------------------------------
    def wakeup(self, destination: str) -> asyncio.Event:
        """An event set whenever rows for `destination` are committed or replayed here.

        Rows may be committed by another process or machine (`serve --workers N`, the CLI's
        `dead-letters replay`, several gateways on one database): noticing them is the
        engine's job. An engine that cannot (SQLite: only this process's commits set it) is
        covered by the relay reading `next_due` at least every idle poll."""
        ...

    async def claim(self, destination: str, limit: int, *, dedup_seconds: float = 0.0) -> Claim:
        """Lease up to `limit` due rows of `destination`, oldest first; in the same step set
        aside rows past their expiry (dead, reason expired), rows without their event
        (dead, reason invalid) and repeats of an event claimed within `dedup_seconds`."""
        ...

    async def finish(self, rows: Sequence[ClaimedRow], state: str = "delivered") -> int:
        """Mark claimed rows delivered (or dry_run); return how many were still ours."""
        ...

    async def retry_later(self, rows: Sequence[ClaimedRow], delay: float, error: str) -> int:
        """Put claimed rows back, due again after `delay` seconds, remembering why."""
        ...

    async def release(self, rows: Sequence[ClaimedRow]) -> int:
        """Give claimed rows back untried (shutdown, paused destination)."""
        ...

    async def dead_letter(
        self, rows: Sequence[ClaimedRow], reason: str, error: str, fbtrace_id: str | None
    ) -> int:
        """Claimed rows that will never be accepted as they are: keep them with the reason."""
        ...

    async def retry_now(self, destination: str) -> int:
        """Make the rows of `destination` waiting out a retry's backoff due now (its platform
        answers again after an outage); return how many. Attempts and errors stay as they are;
        leased rows are left alone."""
        ...

    async def expire(self, destination: str, reason: str = "expired") -> int:
        """Dead-letter queued rows of `destination` past their expiry, with `reason`."""
        ...

    async def next_due(self, destination: str) -> float | None:
        """When the earliest pending or leased row of `destination` falls due (None: none)."""
        ...

    # -- dead letters --------------------------------------------------------------------------
    async def dead_letters(self, selection: DeadLetterFilter, limit: int) -> list[DeadLetter]:
        """Matching dead letters, newest first."""
        ...

    async def replay(self, selection: DeadLetterFilter) -> int:
        """Re-queue matching dead letters as if new (attempts 0, due now); return how many."""
        ...

    # -- reports -------------------------------------------------------------------------------
    async def counts(self) -> dict[tuple[str, str], int]:
        """Rows per (destination, state), every state, sorted by destination then state (CLI)."""
        ...

    async def open_counts(self) -> dict[tuple[str, str], int]:
        """Rows per (destination, state) for the open states only: pending, inflight, dead.
        Polled by /status and /metrics: its cost must follow the backlog, not the finished
        rows kept for inspection."""
        ...

    async def queue_depth(self, at_most: int | None = None) -> QueueDepth:
        """Rows waiting to be sent, counted up to `at_most` (a count of `at_most` means that
        many or more: the count's cost stays bounded however long the queue), the engine's size
        in bytes and the last row id, for backpressure."""
        ...

    async def store_size(self) -> StoreSize:
        """The engine's size in bytes and the last row id, without counting the queue: what
        backpressure reads between counts."""
        ...

    async def oldest_pending(self) -> dict[str, float]:
        """Per destination, the creation time of its oldest queued row."""
        ...

    async def rows(
        self, *, state: str | None = None, limit: int | None = None, newest_first: bool = False
    ) -> list[OutboxRow]:
        """Stored rows with their events (optionally of one state), by id."""
        ...

    async def changes(self, *, after_id: int, since: float, limit: int) -> list[OutboxRow]:
        """Rows stored after row `after_id`, and rows whose state changed at or after `since`
        (updated_at), by change time then id: for following what happens (`outbox --follow`).
        Its cost follows the new rows, the changes and the backlog, not the rows kept."""
        ...

    async def drops(self, since: float = 0.0) -> list[DropCount]:
        """Committed drop counts of the hours that end after `since`, by hour, rule, source,
        event name."""
        ...

    # -- console records -----------------------------------------------------------------------
    # What the console creates (destinations, access keys, sessions) lives in the store, so
    # that every worker and node sees it: each process polls `console_versions` and reads a
    # kind's records again when its number moves. Every change is durable when it returns.
    async def console_versions(self) -> dict[str, int]:
        """Per kind, a number that every change of its records increases (absent: none yet).
        Cheap: processes poll it every second or so."""
        ...

    async def console_records(self, kind: str) -> list[ConsoleRecord]:
        """Every record of `kind`, by name."""
        ...

    async def console_record(self, kind: str, name: str) -> ConsoleRecord | None:
        """The record of `kind` called `name`, if any."""
        ...

    async def add_console_record(self, kind: str, name: str, body: str,
                                 secret: bytes | None = None) -> bool:
        """Store a new record; False, changing nothing, when `kind` already has `name`."""
        ...

    async def update_console_record(self, kind: str, name: str, body: str) -> bool:
        """Replace a record's body (its secret stays); False when there is no such record."""
        ...

    async def set_console_secret(self, kind: str, name: str, secret: bytes | None) -> bool:
        """Replace (None: clear) a record's secret, already encrypted by the caller; False
        when there is no such record."""
        ...

    async def delete_console_record(self, kind: str, name: str) -> bool:
        """Delete a record; False when there was none."""
        ...

    async def prune_console_records(self, kind: str, older_than: float) -> int:
        """Delete the records of `kind` last updated before `older_than` (ended sessions);
        return how many."""
        ...

    # -- upkeep and life cycle -----------------------------------------------------------------
    async def prune(self, older_than: float, dedup_older_than: float | None = None,
                    chunk: int = 5000) -> int:
        """Delete finished rows last touched before `older_than`, drop counts of the hours
        ended by then (and dedup keys older than `dedup_older_than`); return how many rows.
        Dead letters are kept."""
        ...

    async def write_problem(self) -> str | None:
        """None when a transaction that writes can commit now, else why not, for people and
        free of secrets (readiness). It must really write (an empty transaction commits on a
        full disk), and stay cheap: readiness is polled every few seconds."""
        ...

    async def close(self) -> None:
        """Commit whatever is waiting, let running writes end, then let go of the store.
        Closing again is harmless (it waits for the first close)."""
        ...

    # -- the whole gateway (the console's view of every process and node) --------------------
    async def put_report(self, process: str, started_at: float, report: bytes, *,
                         forget_before: float) -> None:
        """Keep `report` as `process`'s (replacing its last one; seen now, by the store's
        clock), and forget the reports of processes last seen before `forget_before`."""
        ...

    async def reports(self) -> list[ProcessReport]:
        """Every process's last report, by process."""
        ...

    async def watch(self, process: str, until: float) -> None:
        """`process` has live-event watchers until `until` (renewed while they stay; a time
        already past ends it)."""
        ...

    async def watchers(self) -> dict[str, float]:
        """The processes with watchers now, and until when. Polled by every process about
        once a second: it must stay a read of a few rows."""
        ...

    async def add_live_events(self, process: str, events: Sequence[bytes], *, keep_rows: int,
                              keep_seconds: float) -> None:
        """Add `events` (each one's JSON) as seen by `process`, with ids above every earlier
        one's, in one transaction; then keep only the newest `keep_rows` and those added in
        the last `keep_seconds`. Sets `live_wakeup` here, and where the engine can (PostgreSQL:
        NOTIFY) in every other process."""
        ...

    async def live_events(self, after_id: int, limit: int) -> list[LiveEvent]:
        """Up to `limit` live events with ids above `after_id`, by id. Ids are given in the
        order of adding but, with concurrent writers, may become visible slightly out of
        order: readers look a little back (see gateway/whole/feed.py)."""
        ...

    async def last_live_event(self) -> int:
        """The highest live event id given so far (0: none); a new reader starts after it."""
        ...

    def live_wakeup(self) -> asyncio.Event:
        """An event set when live events are added: by this process always, by others where
        the engine can notice them (SQLite cannot: readers poll)."""
        ...
