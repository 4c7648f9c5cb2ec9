"""The database's clock, as seen from one node: every node's leases and due times in one time.

Leases, retries and expiry compare a time one node wrote with another node's `now`. Each
node's clock may be off (no NTP, a virtual machine resumed): a node running ahead by more than
a lease would take over rows another node is still sending. So the engine keeps its times in
the server's clock: it measures the offset between the gateway's clock and the server's
(`clock_timestamp()`) when it opens, and again every `SYNC_SECONDS`, and adds it to every time
it writes or compares (and takes it off every time it hands back, so that callers keep working
in their own clock: the relay's waits, a test's hand-moved clock).

A node within `TOLERANCE_SECONDS` of the server keeps its own clock (offset 0): nodes that
close agree well enough on leases of tens of seconds, and a measurement's noise never moves
their times. A clock that stands still while a round trip to the server takes place is not a
wall clock but a test's, moved by hand: it is taken as it is (offset 0), since measuring it
against a running one would make every store opened a moment later see another time. The offset
is rounded to 1/1024 s: adding it to a time and taking it off again gives the same float exactly
(a lease handed back must fence the row it leased).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .connection import Pool, unavailable

__all__ = ["SYNC_SECONDS", "TOLERANCE_SECONDS", "ServerClock", "measure_offset"]

log = logging.getLogger(__name__)

SYNC_SECONDS = 60.0  # of real time, between two measurements while the node runs
TOLERANCE_SECONDS = 1.0
_SAMPLES = 3  # the one with the shortest round trip counts
_GRID = 1024.0

_SERVER_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"


async def measure_offset(conn: Any, clock: Callable[[], float]) -> float:
    """The server's clock minus `clock`, from the quickest of a few round trips (its error is
    at most half that round trip); 0 within TOLERANCE_SECONDS or for a clock that stands
    still."""
    best: tuple[float, float] | None = None
    for _ in range(_SAMPLES):
        before, started = clock(), time.perf_counter()
        server = float(await conn.fetchval(_SERVER_NOW))
        trip, after = time.perf_counter() - started, clock()
        if after == before:
            return 0.0
        if best is None or trip < best[0]:
            best = (trip, server - (before + after) / 2)
    assert best is not None
    if abs(best[1]) < TOLERANCE_SECONDS:
        return 0.0
    return round(best[1] * _GRID) / _GRID


class ServerClock:
    """The gateway's clock moved onto the server's by the last measured offset."""

    def __init__(self, clock: Callable[[], float], offset: float) -> None:
        self._clock = clock
        self.offset = offset

    def now(self) -> float:
        """Now, in the server's time."""
        return self._clock() + self.offset

    def to_server(self, moment: float) -> float:
        return moment + self.offset

    def to_local(self, moment: float) -> float:
        return moment - self.offset

    async def follow(self, pool: Pool) -> None:
        """Measure again every SYNC_SECONDS of real time (either clock drifts; a node's may be
        stepped). A failed measurement keeps the last offset: the pool's other callers report
        the database being away."""
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            try:
                async with pool.connection() as conn:
                    self.offset = await measure_offset(conn, self._clock)
            except Exception as exc:
                log.debug("outbox clock: cannot measure the database's clock (%s)",
                          unavailable(exc) or type(exc).__name__)
