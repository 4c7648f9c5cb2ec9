"""Whose turn it is to write a SQLite file: one write transaction at a time, durable writes
first.

Durable writes are what someone waits for: ingest's commits (a hit's answer waits for its
rows), the readiness probe, an operator's replay. Relaxed writes are the relay's bookkeeping
(claims, acknowledgements, sweeps), which nobody waits for. Taken in arrival order, a commit
queued behind the relay's transactions (two destinations with four batches in flight each
are up to eight) waited for all of them. Here a durable write goes ahead of relaxed ones, but
not twice in a row while one waits: either kind waits for at most one transaction of the
other besides the one running, and a steady stream of commits never starves the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

__all__ = ["WriteTurns"]


class WriteTurns:
    def __init__(self) -> None:
        self._held = False
        self._waiting: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}
        self._last_durable = False

    @contextlib.asynccontextmanager
    async def turn(self, *, durable: bool) -> AsyncIterator[None]:
        """Hold the only turn to write for the block."""
        await self._acquire(durable)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, durable: bool) -> None:
        if not self._held:  # nobody waits either: a release hands the turn to a waiter
            self._held, self._last_durable = True, durable
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting[durable].append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # handed the turn, then cancelled
                self._release()
            raise  # still queued, cancelled: a release skips it

    def _release(self) -> None:
        """Hand the turn on: to a durable write waiting, unless the turn ending was one and
        a relaxed write waits."""
        for durable in (False, True) if self._last_durable else (True, False):
            queue = self._waiting[durable]
            while queue:
                granted = queue.popleft()
                if not granted.done():
                    granted.set_result(None)
                    self._last_durable = durable
                    return
        self._held = False
