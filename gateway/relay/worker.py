"""One relay worker per destination: claim due rows, send them in batches, record the outcome.

A worker holds at most `max_in_flight` claims at once; each claim is split into one request per
(pixel, test_event_code) so every request shares its pixel, token and test code. Failures put the
rows back with exponential backoff and full jitter; nothing is dropped. Acknowledgements are
shielded from cancellation so a shutdown never forgets a delivery it saw succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Protocol

from ..config import DestinationSettings
from ..errors import Permanent, Retryable
from ..observe import Metrics
from ..outbox import ClaimedRow, Outbox

__all__ = ["RelayWorker", "Sender", "backoff_delay"]

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 5.0


class Sender(Protocol):
    finished_state: str

    async def send(
        self, pixel_id: str, test_event_code: str, rows: Sequence[ClaimedRow]
    ) -> None: ...


def backoff_delay(attempts: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempts)]."""
    return float(rng() * min(cap, base * 2.0 ** min(attempts, 32)))


class RelayWorker:
    """Drains one destination's rows from the outbox."""

    def __init__(
        self,
        settings: DestinationSettings,
        outbox: Outbox,
        sender: Sender,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._outbox = outbox
        self._sender = sender
        self._metrics = metrics
        self._clock = clock
        self._rng = rng
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name=f"relay:{self.settings.name}")

    async def stop(self, timeout: float) -> None:
        """Stop claiming; let in-flight batches finish within `timeout`, then release the rest."""
        self._stopping.set()
        self._outbox.wakeup(self.settings.name).set()
        try:
            await asyncio.wait_for(self._drain(), timeout)
        except TimeoutError:
            late = [task for task in self._tasks() if not task.done()]
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            log.warning("destination %s: %d batches cut short at shutdown; their events stay "
                        "queued", self.settings.name, len(late))

    def _tasks(self) -> set[asyncio.Task[None]]:
        tasks = set(self._in_flight)
        if self._loop_task is not None:
            tasks.add(self._loop_task)
        return tasks

    async def _drain(self) -> None:
        while pending := {task for task in self._tasks() if not task.done()}:
            await asyncio.wait(pending)

    async def _run(self) -> None:
        name = self.settings.name
        wakeup = self._outbox.wakeup(name)
        while not self._stopping.is_set():
            await self._slots.acquire()
            if self._stopping.is_set():
                self._slots.release()
                break
            wakeup.clear()
            try:
                rows = await self._outbox.claim(name, self.settings.batch_size)
            except Exception:
                self._slots.release()
                log.exception("destination %s: cannot claim from the outbox", name)
                await self._wait(wakeup, IDLE_POLL_SECONDS)
                continue
            if rows:
                task = asyncio.create_task(self._deliver(rows))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
                continue
            self._slots.release()
            await self._idle(wakeup)

    async def _idle(self, wakeup: asyncio.Event) -> None:
        """Sleep until new rows arrive or the next retry falls due; then linger for a batch."""
        due = await self._outbox.next_due(self.settings.name)
        timeout = IDLE_POLL_SECONDS if due is None else min(
            IDLE_POLL_SECONDS, max(0.0, due - self._clock())
        )
        if await self._wait(wakeup, timeout) and self.settings.linger_ms > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.linger_ms / 1000)

    async def _wait(self, event: asyncio.Event, timeout: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return not self._stopping.is_set()

    async def _deliver(self, rows: list[ClaimedRow]) -> None:
        try:
            def key(row: ClaimedRow) -> tuple[str, str]:
                return row.pixel_id, row.test_event_code

            for (pixel_id, code), group in groupby(sorted(rows, key=key), key=key):
                await self._send(pixel_id, code, list(group))
        finally:
            self._slots.release()

    async def _send(self, pixel_id: str, code: str, rows: list[ClaimedRow]) -> None:
        name = self.settings.name
        ids = [row.id for row in rows]
        try:
            await self._sender.send(pixel_id, code, rows)
        except asyncio.CancelledError:
            await asyncio.shield(self._outbox.release(ids))
            raise
        except Retryable as exc:
            await self._retry(rows, exc.reason, exc.min_delay, "retry")
        except Permanent as exc:
            # Bisection and dead letters belong to the delivery-guarantees work; until then the
            # batch waits at the longest backoff rather than being dropped.
            log.error("destination %s: %d events refused: %s", name, len(rows), exc.reason)
            await self._retry(rows, exc.reason, self.settings.retry_max_seconds, "refused")
        except Exception as exc:
            log.exception("destination %s: unexpected error while sending", name)
            await self._retry(rows, f"internal error: {type(exc).__name__}", 0.0, "error")
        else:
            await asyncio.shield(self._outbox.finish(ids, self._sender.finished_state))
            outcome = self._sender.finished_state
            self._metrics.inc("gateway_relay_requests_total", destination=name, outcome=outcome)
            self._metrics.inc("gateway_relay_events_total", len(rows), destination=name,
                              outcome=outcome)

    async def _retry(self, rows: list[ClaimedRow], reason: str, min_delay: float,
                     outcome: str) -> None:
        attempts = max(row.attempts for row in rows)
        delay = max(min_delay, backoff_delay(attempts, self.settings.retry_base_seconds,
                                             self.settings.retry_max_seconds, self._rng))
        log.warning("destination %s: %d events will be retried in %.1fs: %s",
                    self.settings.name, len(rows), delay, reason)
        await asyncio.shield(self._outbox.retry_later([row.id for row in rows], delay, reason))
        self._outbox.wakeup(self.settings.name).set()  # the idle loop re-reads the next due time
        self._metrics.inc("gateway_relay_requests_total", destination=self.settings.name,
                          outcome=outcome)
        self._metrics.inc("gateway_relay_events_total", len(rows),
                          destination=self.settings.name, outcome=outcome)
