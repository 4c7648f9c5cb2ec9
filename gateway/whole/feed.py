"""Live events across processes and nodes, through the store, and only while someone watches.

A process with console streams open (watchers) says so in the store (`watch`, renewed every
`RENEW_SECONDS`, lasting `WATCH_SECONDS`) and reads the events the others add, every
`TICK_SECONDS` or at once when the engine tells (PostgreSQL's NOTIFY), handing them to its own
streams. Every process asks the store every `LOOK_SECONDS` whether anyone elsewhere watches;
while someone does, its event bus forwards what it tells, and the events go to the store in one
batch per tick, in a ring trimmed as it is written. When nobody watches, nobody writes: each
process only reads the few watcher rows once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import OutboxUnavailable
from ..eventbus import EventBus
from ..storage import LiveEvent, Outbox
from .identity import ProcessId

__all__ = ["Cursor", "LiveFeed"]

log = logging.getLogger(__name__)

TICK_SECONDS = 0.2  # while someone watches: how often events are written, and read
LOOK_SECONDS = 1.0  # how often a process asks whether anyone elsewhere watches
WATCH_SECONDS = 10.0  # a watcher's row lasts this long unless renewed ...
RENEW_SECONDS = 3.0  # ... which it is this often while a stream is open here
KEEP_ROWS = 5000  # the ring: at most this many events, ...
KEEP_SECONDS = 120.0  # ... added within this long
READ_LIMIT = 1000  # events read at a time
BUFFER_SIZE = 5000  # events waiting to be written; beyond, they are lost (and told)
LATE_SECONDS = 2.0  # how long a reader waits for a missing id before counting it lost


class Cursor:
    """Where one reader is: every id up to `floor` is behind it, those above it it has read
    are in `seen`. An id missing above the floor may be a commit still on its way (several
    writers take ids in one order and commit in another): it is waited for `LATE_SECONDS`,
    then counted as lost, as are ids rolled back or trimmed before they were read."""

    def __init__(self, floor: int) -> None:
        self.floor = floor
        self.seen: set[int] = set()
        self._gap_since: float | None = None

    def take(self, events: list[LiveEvent], now: float) -> tuple[list[LiveEvent], int]:
        """The events not read before, and how many were given up on."""
        fresh = [e for e in events if e.id > self.floor and e.id not in self.seen]
        self.seen.update(e.id for e in fresh)
        lost = 0
        while True:
            while self.floor + 1 in self.seen:
                self.floor += 1
                self.seen.remove(self.floor)
            if not self.seen:
                self._gap_since = None
                break
            if self._gap_since is None:
                self._gap_since = now
            if now - self._gap_since < LATE_SECONDS:
                break
            after = min(self.seen)
            lost += after - self.floor - 1
            self.floor, self._gap_since = after - 1, None
        return fresh, lost


class LiveFeed:
    def __init__(self, bus: EventBus, outbox: Outbox, process: ProcessId,
                 clock: Callable[[], float]) -> None:
        self._bus = bus
        self._outbox = outbox
        self._process = process.id
        self._origin = process.origin()
        self._clock = clock
        self._buffer: list[dict[str, Any]] = []
        self._lost = 0  # events dropped before they reached the store
        self.forwarding = False
        self._watching = False  # this process's watcher row is in the store

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        look_at = renew_at = 0.0
        cursor: Cursor | None = None
        while True:
            here = self._bus.watched.is_set()
            try:
                now = loop.time()
                if here and now >= renew_at:
                    await self._outbox.watch(self._process, self._clock() + WATCH_SECONDS)
                    self._watching, renew_at = True, now + RENEW_SECONDS
                elif not here and self._watching:
                    await self._unwatch()
                    cursor, renew_at = None, 0.0
                if now >= look_at:
                    look_at = now + LOOK_SECONDS
                    watchers = await self._outbox.watchers()
                    self._forward(any(p != self._process for p in watchers))
                await self._flush()
                if here:
                    if cursor is None:  # from now on
                        cursor = Cursor(await self._outbox.last_live_event())
                    else:
                        await self._read(cursor, loop.time())
            except OutboxUnavailable:
                pass  # said elsewhere (readiness, /status); local events still reach streams
            except Exception:
                log.exception("live events across processes failed; trying again")
            await self._wait(here)

    async def stop(self) -> None:
        """At shutdown: forward no more, and end this process's watching at once."""
        self._forward(False)
        if self._watching:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._unwatch()

    async def _unwatch(self) -> None:
        await self._outbox.watch(self._process, self._clock())
        self._watching = False

    def _forward(self, on: bool) -> None:
        if on != self.forwarding:
            self.forwarding = on
            self._bus.forward_to(self._keep if on else None)

    def _keep(self, item: dict[str, Any]) -> None:
        if len(self._buffer) >= BUFFER_SIZE:
            self._lost += 1
        else:
            self._buffer.append(item)

    async def _flush(self) -> None:
        if not self._buffer and not self._lost:
            return
        items, self._buffer = self._buffer, []
        if self._lost:
            items.append({"kind": "lost", "count": self._lost, **self._origin})
            self._lost = 0
        try:
            await self._outbox.add_live_events(
                self._process, [orjson.dumps(item) for item in items], keep_rows=KEEP_ROWS,
                keep_seconds=KEEP_SECONDS)
        except BaseException:
            self._lost += sum(item.get("count", 1) if item.get("kind") == "lost" else 1
                              for item in items)
            raise

    async def _read(self, cursor: Cursor, now: float) -> None:
        events = await self._outbox.live_events(cursor.floor, READ_LIMIT)
        fresh, lost = cursor.take(events, now)
        for event in fresh:
            if event.process == self._process:
                continue  # told to this process's streams already
            try:
                item = orjson.loads(event.event)
            except orjson.JSONDecodeError:
                continue
            if isinstance(item, dict):
                self._bus.deliver(item)
        if lost:
            self._bus.deliver({"kind": "lost", "count": lost})

    async def _wait(self, here: bool) -> None:
        """Until the next tick, or sooner: a stream opens here (idle), or the store says events
        were added (watching)."""
        if here:
            wake, timeout = self._outbox.live_wakeup(), TICK_SECONDS
        else:
            wake = self._bus.watched
            timeout = TICK_SECONDS if self.forwarding else LOOK_SECONDS
        waiting = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait([waiting], timeout=timeout)
        finally:
            waiting.cancel()
        if here:
            wake.clear()
