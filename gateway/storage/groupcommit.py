"""Group commit, for any storage engine: what ingest stores within one commit window shares
one transaction, and the drops the rules counted ride along with it.

`enqueue` returns once its rows are committed (OutboxUnavailable if they could not be). Requests
that arrive while a window is open wait for it; one request whose rows the store refuses never
sinks the others of its window (they are committed one by one). Drops are counted in memory and
stored with the next commit, or on their own within `drops_interval` when no event comes (never
a write per drop), and at close. A store that keeps failing (a full disk, a database that is
down) is logged once when commits start failing and once when they work again.

The engine supplies the two transactions: `insert(entries, drops)` and `insert_drops(drops)`,
each raising on failure, and hears of each commit's destinations (`committed`) to wake relays.
An engine whose writes take turns (SQLite) also supplies `turn`: the batch is formed once the
turn is held, so the requests arriving while the commit waits for it ride in it rather than
wait for the next one; `insert` then runs inside the turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..errors import OutboxUnavailable
from .types import OutboxEntry, drop_hour

__all__ = ["DROPS_INTERVAL", "Drops", "GroupCommit", "GroupCommitted"]

log = logging.getLogger(__name__)

DROPS_INTERVAL = 1.0  # seconds a drop count waits for an event commit to take it
Drops = Counter[tuple[int, str, str, str]]  # (hour, rule, source, event name) -> events
Waiting = list[tuple[Sequence[OutboxEntry], asyncio.Future[None]]]


class GroupCommit:
    def __init__(
        self,
        *,
        interval: float,
        clock: Callable[[], float],
        insert: Callable[[list[OutboxEntry], Drops], Awaitable[None]],
        insert_drops: Callable[[Drops], Awaitable[None]],
        committed: Callable[[set[str]], None],
        describe: Callable[[BaseException], str] = str,
        one_by_one: Callable[[BaseException], bool] = lambda exc: True,
        drops_interval: float = DROPS_INTERVAL,
        turn: Callable[[], contextlib.AbstractAsyncContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        """`describe`: an error as the log may say it (no secrets); `one_by_one`: whether the
        store refused what was written (worth committing again request by request, and without
        the drop counts), rather than being unreachable (a full disk, a database that is down:
        all would fail alike, and the counts are kept for later)."""
        self._interval = interval
        self._clock = clock
        self._insert = insert
        self._insert_drops = insert_drops
        self._committed = committed
        self._describe = describe
        self._one_by_one = one_by_one
        self._turn = turn
        self.drops_interval = drops_interval
        self.commits = 0  # transactions that stored ingested rows (group commit at work)
        self._pending: Waiting = []
        self._flusher: asyncio.Task[None] | None = None
        self._drops: Drops = Counter()
        self._drops_due = asyncio.Event()  # set at close: commit them now
        self._drop_flusher: asyncio.Task[None] | None = None
        self._failing = False
        self._closed = False

    # -- events ------------------------------------------------------------------------------
    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        if self._closed:
            raise OutboxUnavailable("the outbox is closing")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entries, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            if self._interval > 0 and not self._closed:
                await asyncio.sleep(self._interval)
            while self._pending:
                async with self._turn():
                    batch, self._pending = self._pending, []
                    await self._write(batch)
        finally:
            self._flusher = None

    async def _write(self, batch: Waiting) -> None:
        error = await self._commit([e for entries, _ in batch for e in entries])
        if error is not None and len(batch) > 1 and self._one_by_one(error):
            # One bad request must not sink the others that shared its transaction.
            for entries, done in batch:
                self._settle([(entries, done)], await self._commit(list(entries)))
            return
        self._settle(batch, error)

    async def _commit(self, entries: list[OutboxEntry]) -> BaseException | None:
        """Insert the rows, and the drops counted so far, in one transaction; the error
        instead of raising."""
        drops, self._drops = self._drops, Counter()
        try:
            try:
                await self._insert(entries, drops)
            except Exception as exc:
                if not (drops and self._one_by_one(exc)):
                    raise
                # The store refused something, the rows or the counts: counts carried on to
                # every later commit would sink them all, so try the rows alone.
                await self._insert(entries, Counter())
                log.warning("%d drop counts the outbox refused are not kept: %s",
                            sum(drops.values()), self._describe(exc))
        except Exception as exc:  # disk full, database down, bad row: refuse, never half-write
            self._drops.update(drops)  # the next commit takes them
            if not self._failing:  # once, not per request: every hit fails until it works
                log.error("outbox commit failed: %s; ingest answers 503 until commits work",
                          self._describe(exc))
            self._failing = True
            return exc
        if self._failing:
            log.info("outbox commits work again")
        self._failing = False
        self.commits += 1
        return None

    def _settle(self, batch: Waiting, error: BaseException | None) -> None:
        for _, done in batch:
            if done.done():
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(OutboxUnavailable("the outbox could not commit"))
        if error is None:
            self._committed({e.destination for entries, _ in batch for e in entries})

    # -- drops -------------------------------------------------------------------------------
    def count_drop(self, rule: str, source: str, event_name: str) -> None:
        """Count one dropped event in memory; the next commit (or `_commit_drops`) stores it."""
        self._drops[(drop_hour(self._clock()), rule, source, event_name)] += 1
        if self._drop_flusher is None and not self._closed:
            self._drop_flusher = asyncio.create_task(self._commit_drops())

    async def _commit_drops(self) -> None:
        """Commit the drops no event commit took within `drops_interval` (or at close)."""
        try:
            while self._drops:  # also those counted while the last ones were being written
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drops_due.wait(), self.drops_interval)
                drops, self._drops = self._drops, Counter()
                if not drops:  # an event commit took them
                    continue
                try:
                    await self._insert_drops(drops)
                except Exception as exc:
                    if self._one_by_one(exc):  # refused, not unreachable: trying again won't do
                        log.warning("%d drop counts the outbox refused are not kept: %s",
                                    sum(drops.values()), self._describe(exc))
                        continue
                    if not self._failing:  # once per outage, as event commits
                        log.warning("could not store %d drop counts (trying again): %s",
                                    sum(drops.values()), self._describe(exc))
                    self._failing = True
                    self._drops.update(drops)
                    if self._closed:
                        return
        finally:
            self._drop_flusher = None

    # -- life cycle --------------------------------------------------------------------------
    async def close(self) -> None:
        """Commit what waits (rows, then drops); later enqueues are refused."""
        self._closed = True
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        self._drops_due.set()
        if self._drop_flusher is None and self._drops:  # given back by a failed commit
            self._drop_flusher = asyncio.ensure_future(self._commit_drops())
        if self._drop_flusher is not None:
            await asyncio.shield(self._drop_flusher)


class GroupCommitted:
    """The Outbox protocol's ingest side for an engine that keeps its GroupCommit in `_group`,
    and its close: once, whoever asks (the engine's `_close` commits what waits first)."""

    _group: GroupCommit
    _closing: asyncio.Future[None] | None = None

    async def close(self) -> None:
        """Commit whatever is waiting, let running writes end, then close the store. Closing
        again waits for the first close."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        raise NotImplementedError

    @property
    def commits(self) -> int:
        return self._group.commits

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        """Return once `entries` are committed; OutboxUnavailable if they could not be."""
        await self._group.enqueue(entries)

    def count_drop(self, rule: str, source: str, event_name: str) -> None:
        self._group.count_drop(rule, source, event_name)
