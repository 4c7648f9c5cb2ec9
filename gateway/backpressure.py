"""Refuse new events while the outbox is over its bounds, instead of growing without limit.

A background check (every second) compares the outbox's queue depth, as its engine reports it
(queued rows, and the store's size: the SQLite file, or PostgreSQL's outbox tables; with
several nodes on one database the rows are every node's), with `storage.max_queue_rows` /
`storage.max_queue_mb`; while over, ingest answers 503 with `Retry-After`. Checking in the
background keeps the per-hit cost at one attribute read.

Counting queued rows costs what the queue holds (about a quarter of a second per million rows
on SQLite; per process, every second), so the check counts seldom, and never past the limit.
Between counts the queue holds at most the last count plus the rows written since, which the
growth of the last row id bounds (cheap to read at any size): while that bound stays under the
limit the queue is under it too, and nothing is counted. Once the bound reaches the limit the
queue is counted again, up to the limit, but never for more than a tenth of the time (the last
count holds meanwhile), and at least once a minute whatever the bound (dead letters replayed
come back without new ids).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .errors import OutboxUnavailable
from .observe import Metrics
from .storage import Outbox, QueueDepth

__all__ = ["Backpressure"]

log = logging.getLogger(__name__)

CHECK_EVERY_SECONDS = 1.0
RECOUNT_EVERY_SECONDS = 60.0  # at least, whatever the bound (replayed rows keep their ids)
COUNTING_SHARE = 0.1  # of the time, at most: a count that took 0.3 s waits 3 s for the next


class Backpressure:
    def __init__(self, outbox: Outbox, metrics: Metrics, *, max_rows: int, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._outbox = outbox
        self._metrics = metrics
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._clock = clock
        self._counted: QueueDepth | None = None  # the last count
        self._counted_at = 0.0
        self._next_count = 0.0  # no count before this (the counting share)
        self.reason: str | None = None  # set while ingest must refuse

    async def check(self) -> None:
        """Compare the queue with the bounds; an outbox that cannot say keeps the last state
        (it refuses ingest itself while unavailable, and has logged why)."""
        try:
            rows, size = await self._depth()
        except OutboxUnavailable:
            return
        if rows >= self._max_rows:
            reason = f"the outbox holds its limit of {self._max_rows} queued events or more"
        elif size >= self._max_bytes:
            reason = f"the outbox file is {size // 2**20} MiB (limit {self._max_bytes // 2**20})"
        else:
            reason = None
        if reason != self.reason:
            if reason:
                log.error("backpressure on: %s; ingest answers 503 until it drains", reason)
            else:
                log.info("backpressure off: the outbox is below its bounds again")
        self.reason = reason
        self._metrics.backpressure.set(1 if reason else 0)

    async def _depth(self) -> tuple[int, int]:
        """(queued rows: counted up to the limit, or a bound of them under it; bytes)."""
        now = self._clock()
        counted = self._counted
        if counted is not None and now < self._counted_at + RECOUNT_EVERY_SECONDS:
            size = await self._outbox.store_size()
            bound = counted.rows + max(0, size.last_id - counted.last_id)
            if bound < self._max_rows:
                return bound, size.bytes
            if now < self._next_count:
                return counted.rows, size.bytes
        counted = await self._outbox.queue_depth(at_most=self._max_rows)
        self._counted, self._counted_at = counted, now
        self._next_count = now + (self._clock() - now) / COUNTING_SHARE
        return counted.rows, counted.bytes

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("backpressure check failed; keeping the last state")
            await asyncio.sleep(CHECK_EVERY_SECONDS)
