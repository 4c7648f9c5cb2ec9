"""An outbox that a serving gateway can start without: opened in the background until it opens.

A store that cannot be opened at start (SQLite: a full disk, where WAL mode cannot even create
its -wal and -shm files; a database server that is down) must not keep the gateway from
starting: it serves its probes, answers ingest 503 with Retry-After, and opens the store by
itself once it can. Until then every call raises OutboxUnavailable naming the reason, so ingest,
the relay, backpressure and the operator endpoints go through their ordinary "outbox
unavailable" paths; afterwards every call goes straight to the engine's outbox.

Engines say "try again later" by raising OutboxUnavailable from their `open`; any other error
(a store from a newer gateway, a bug) stops start-up as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from ..errors import OutboxUnavailable
from .outbox import Outbox
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

__all__ = ["DeferredOutbox"]

log = logging.getLogger(__name__)

# Waits between attempts to open: doubled after each failure, up to the cap.
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0
MAX_EARLY_DROPS = 100_000  # counted while the store is not open (then: not counted)


class DeferredOutbox:
    """The `Outbox` protocol over an engine's outbox that may not be open yet."""

    def __init__(self, open_: Callable[[], Awaitable[Outbox]], name: str) -> None:
        self._open = open_
        self._name = name  # for the log (a path; never a password)
        self._outbox: Outbox | None = None
        self._problem = "the outbox is not open yet"
        self._retrying: asyncio.Task[None] | None = None
        self._closed = False
        # Handed out before the store opened; set once it does, so that waiting relay
        # workers look again (and then get the engine's own events).
        self._early_wakeups: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        # Drops counted before the store opened (rules drop without storing), handed over then.
        self._early_drops: list[tuple[str, str, str]] = []
        self._early_live = asyncio.Event()  # live_wakeup before the store opened

    async def start(self) -> None:
        """Open the store now if possible; otherwise say why once and keep trying in the
        background. Errors that waiting cannot cure are raised."""
        try:
            self._opened(await self._open())
        except OutboxUnavailable as exc:
            self._problem = str(exc)
            log.error("%s (%s); ingest answers 503 while opening it is retried in the "
                      "background", exc, self._name)
            self._retrying = asyncio.create_task(self._retry(), name="outbox:open")

    async def _retry(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            await asyncio.sleep(delay)
            try:
                outbox = await self._open()
            except OutboxUnavailable as exc:
                self._problem = str(exc)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            except Exception:
                # Not curable by waiting (e.g. a newer gateway migrated the store meanwhile):
                # stay unavailable, loudly, once.
                log.exception("opening the outbox %s failed; no longer retrying", self._name)
                self._problem = "the outbox cannot be opened (see the log)"
                return
            if self._closed:  # closed while it was opening
                await outbox.close()
                return
            log.info("the outbox %s is open: ingest and relay resume", self._name)
            self._opened(outbox)
            return

    def _opened(self, outbox: Outbox) -> None:
        self._outbox = outbox
        for drop in self._early_drops:
            outbox.count_drop(*drop)
        self._early_drops.clear()
        for event in self._early_wakeups.values():
            event.set()
        self._early_live.set()

    def _store(self) -> Outbox:
        if self._outbox is None:
            raise OutboxUnavailable(self._problem)
        return self._outbox

    @property
    def commits(self) -> int:
        return 0 if self._outbox is None else self._outbox.commits

    # -- ingest --------------------------------------------------------------------------------
    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        await self._store().enqueue(entries)

    def count_drop(self, rule: str, source: str, event_name: str) -> None:
        if self._outbox is None:
            if len(self._early_drops) < MAX_EARLY_DROPS:
                self._early_drops.append((rule, source, event_name))
            return
        self._outbox.count_drop(rule, source, event_name)

    # -- relay ---------------------------------------------------------------------------------
    def wakeup(self, destination: str) -> asyncio.Event:
        if self._outbox is None:
            return self._early_wakeups[destination]
        return self._outbox.wakeup(destination)

    async def claim(self, destination: str, limit: int, *, dedup_seconds: float = 0.0) -> Claim:
        return await self._store().claim(destination, limit, dedup_seconds=dedup_seconds)

    async def finish(self, rows: Sequence[ClaimedRow], state: str = "delivered") -> int:
        return await self._store().finish(rows, state)

    async def retry_later(self, rows: Sequence[ClaimedRow], delay: float, error: str) -> int:
        return await self._store().retry_later(rows, delay, error)

    async def retry_now(self, destination: str) -> int:
        return await self._store().retry_now(destination)

    async def release(self, rows: Sequence[ClaimedRow]) -> int:
        return await self._store().release(rows)

    async def dead_letter(
        self, rows: Sequence[ClaimedRow], reason: str, error: str, fbtrace_id: str | None
    ) -> int:
        return await self._store().dead_letter(rows, reason, error, fbtrace_id)

    async def expire(self, destination: str, reason: str = "expired") -> int:
        return await self._store().expire(destination, reason)

    async def next_due(self, destination: str) -> float | None:
        return await self._store().next_due(destination)

    # -- dead letters --------------------------------------------------------------------------
    async def dead_letters(self, selection: DeadLetterFilter, limit: int) -> list[DeadLetter]:
        return await self._store().dead_letters(selection, limit)

    async def replay(self, selection: DeadLetterFilter) -> int:
        return await self._store().replay(selection)

    # -- reports -------------------------------------------------------------------------------
    async def changes(self, *, after_id: int, since: float, limit: int) -> list[OutboxRow]:
        return await self._store().changes(after_id=after_id, since=since, limit=limit)

    async def drops(self, since: float = 0.0) -> list[DropCount]:
        return await self._store().drops(since)

    async def counts(self) -> dict[tuple[str, str], int]:
        return await self._store().counts()

    async def open_counts(self) -> dict[tuple[str, str], int]:
        return await self._store().open_counts()

    async def queue_depth(self, at_most: int | None = None) -> QueueDepth:
        return await self._store().queue_depth(at_most)

    async def store_size(self) -> StoreSize:
        return await self._store().store_size()

    async def oldest_pending(self) -> dict[str, float]:
        return await self._store().oldest_pending()

    async def rows(
        self, *, state: str | None = None, limit: int | None = None, newest_first: bool = False
    ) -> list[OutboxRow]:
        return await self._store().rows(state=state, limit=limit, newest_first=newest_first)

    # -- console records -----------------------------------------------------------------------
    async def console_versions(self) -> dict[str, int]:
        return await self._store().console_versions()

    async def console_records(self, kind: str) -> list[ConsoleRecord]:
        return await self._store().console_records(kind)

    async def console_record(self, kind: str, name: str) -> ConsoleRecord | None:
        return await self._store().console_record(kind, name)

    async def add_console_record(self, kind: str, name: str, body: str,
                                 secret: bytes | None = None) -> bool:
        return await self._store().add_console_record(kind, name, body, secret)

    async def update_console_record(self, kind: str, name: str, body: str) -> bool:
        return await self._store().update_console_record(kind, name, body)

    async def set_console_secret(self, kind: str, name: str, secret: bytes | None) -> bool:
        return await self._store().set_console_secret(kind, name, secret)

    async def delete_console_record(self, kind: str, name: str) -> bool:
        return await self._store().delete_console_record(kind, name)

    async def prune_console_records(self, kind: str, older_than: float) -> int:
        return await self._store().prune_console_records(kind, older_than)

    # -- upkeep and life cycle -----------------------------------------------------------------
    async def prune(self, older_than: float, dedup_older_than: float | None = None,
                    chunk: int = 5000) -> int:
        if self._outbox is None:
            return 0  # nothing to prune yet (upkeep runs again later); no error to log
        return await self._outbox.prune(older_than, dedup_older_than, chunk)

    async def write_problem(self) -> str | None:
        if self._outbox is None:
            return self._problem
        return await self._outbox.write_problem()

    async def close(self) -> None:
        self._closed = True
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        if self._outbox is not None:
            await self._outbox.close()

    # -- the whole gateway ---------------------------------------------------------------------
    async def put_report(self, process: str, started_at: float, report: bytes, *,
                         forget_before: float) -> None:
        await self._store().put_report(process, started_at, report,
                                       forget_before=forget_before)

    async def reports(self) -> list[ProcessReport]:
        return await self._store().reports()

    async def watch(self, process: str, until: float) -> None:
        await self._store().watch(process, until)

    async def watchers(self) -> dict[str, float]:
        return await self._store().watchers()

    async def add_live_events(self, process: str, events: Sequence[bytes], *, keep_rows: int,
                              keep_seconds: float) -> None:
        await self._store().add_live_events(process, events, keep_rows=keep_rows,
                                            keep_seconds=keep_seconds)

    async def live_events(self, after_id: int, limit: int) -> list[LiveEvent]:
        return await self._store().live_events(after_id, limit)

    async def last_live_event(self) -> int:
        return await self._store().last_live_event()

    def live_wakeup(self) -> asyncio.Event:
        if self._outbox is None:
            return self._early_live
        return self._outbox.live_wakeup()
