"""Refuse new events while the outbox is over its bounds, instead of growing without limit.

A background check (every second) compares the outbox's queue depth, as its engine reports it
(queued rows, and the store's size: the SQLite file, or PostgreSQL's outbox tables; with
several nodes on one database the rows are every node's), with `storage.max_queue_rows` /
`storage.max_queue_mb`; while over, ingest answers 503 with `Retry-After`. Checking in the
background keeps the per-hit cost at one attribute read.
"""

from __future__ import annotations

import asyncio
import logging

from .errors import OutboxUnavailable
from .observe import Metrics
from .storage import Outbox

__all__ = ["Backpressure"]

log = logging.getLogger(__name__)

CHECK_EVERY_SECONDS = 1.0


class Backpressure:
    def __init__(self, outbox: Outbox, metrics: Metrics, *, max_rows: int, max_bytes: int) -> None:
        self._outbox = outbox
        self._metrics = metrics
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self.reason: str | None = None  # set while ingest must refuse

    async def check(self) -> None:
        """Compare the queue with the bounds; an outbox that cannot say keeps the last state
        (it refuses ingest itself while unavailable, and has logged why)."""
        try:
            rows, size = await self._outbox.queue_depth()
        except OutboxUnavailable:
            return
        if rows >= self._max_rows:
            reason = f"the outbox holds {rows} queued events (limit {self._max_rows})"
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

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("backpressure check failed; keeping the last state")
            await asyncio.sleep(CHECK_EVERY_SECONDS)
