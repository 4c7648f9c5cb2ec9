"""One relay worker per destination: claim due rows, send them in batches, record the outcome.

A worker holds at most `max_in_flight` claims at once; each claim is split into one request per
(pixel, test_event_code) so every request shares its pixel, token and test code.

- Retryable failures (network, timeouts, 5xx, rate limits) put the rows back with exponential
  backoff and full jitter.
- A refused batch (Meta rejects a whole request for one bad event) is split in halves until the
  refused events are alone; the rest are delivered. A refused single event waits at the longest
  backoff with Meta's reason in `last_error` (dead letters come with the delivery-guarantees work).
- Acknowledgements are shielded from cancellation, and a shutdown gives unsent rows back, so a
  stop never forgets a delivery it saw succeed nor strands rows until their lease expires.
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
ERROR_PAUSE_SECONDS = 1.0


class Sender(Protocol):
    finished_state: str

    async def send(
        self, pixel_id: str, test_event_code: str, rows: Sequence[ClaimedRow]
    ) -> None: ...


def backoff_delay(attempts: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempts)]."""
    return float(rng() * min(cap, base * 2.0 ** min(attempts, 32)))


def _batch_key(row: ClaimedRow) -> tuple[str, str]:
    return row.pixel_id, row.test_event_code


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

    # -- claiming -------------------------------------------------------------------------------
    async def _run(self) -> None:
        wakeup = self._outbox.wakeup(self.settings.name)
        while not self._stopping.is_set():
            await self._slots.acquire()
            if self._stopping.is_set():
                self._slots.release()
                break
            handed_off = False
            try:
                wakeup.clear()
                rows = await self._outbox.claim(self.settings.name, self.settings.batch_size)
                if rows:
                    self._spawn(rows)
                    handed_off = True
                    continue
                self._slots.release()
                handed_off = True
                await self._idle(wakeup)
            except Exception:
                # The outbox hiccuped (disk, lock): keep the worker alive and try again shortly.
                log.exception("destination %s: outbox error; retrying", self.settings.name)
                if not handed_off:
                    self._slots.release()
                await self._pause(ERROR_PAUSE_SECONDS)

    def _spawn(self, rows: list[ClaimedRow]) -> None:
        task = asyncio.create_task(self._deliver(rows))
        self._in_flight.add(task)
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Only the outbox failing while recording a failure gets here; the lease brings the
            # rows back.
            log.error("destination %s: could not record a delivery outcome: %r",
                      self.settings.name, task.exception())

    async def _idle(self, wakeup: asyncio.Event) -> None:
        """Sleep until new rows arrive or the next retry falls due; then linger for a batch."""
        due = await self._outbox.next_due(self.settings.name)
        timeout = IDLE_POLL_SECONDS if due is None else min(
            IDLE_POLL_SECONDS, max(0.0, due - self._clock())
        )
        try:
            await asyncio.wait_for(wakeup.wait(), timeout)
        except TimeoutError:
            return
        if self.settings.linger_ms > 0:
            await self._pause(self.settings.linger_ms / 1000)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- delivering -----------------------------------------------------------------------------
    async def _deliver(self, rows: list[ClaimedRow]) -> None:
        settled: set[int] = set()
        try:
            for (pixel_id, code), group in groupby(sorted(rows, key=_batch_key), key=_batch_key):
                await self._send(pixel_id, code, list(group), settled)
        except asyncio.CancelledError:
            await asyncio.shield(self._outbox.release([r for r in rows if r.id not in settled]))
            raise
        except Exception as exc:
            log.exception("destination %s: unexpected error while sending", self.settings.name)
            unsent = [r for r in rows if r.id not in settled]
            await self._retry(unsent, f"internal error: {type(exc).__name__}", 0.0, "error")
        finally:
            self._slots.release()

    async def _send(
        self, pixel_id: str, code: str, rows: list[ClaimedRow], settled: set[int]
    ) -> None:
        try:
            await self._sender.send(pixel_id, code, rows)
        except Retryable as exc:
            await self._retry(rows, exc.reason, exc.min_delay, "retry")
        except Permanent as exc:
            if len(rows) > 1:
                # Meta refuses a whole request for one bad event: halve until it is alone.
                middle = len(rows) // 2
                self._count("split", rows)
                await self._send(pixel_id, code, rows[:middle], settled)
                await self._send(pixel_id, code, rows[middle:], settled)
                return
            log.error("destination %s: event %s refused: %s", self.settings.name,
                      rows[0].event_id, exc.reason)
            await self._retry(rows, exc.reason, self.settings.retry_max_seconds, "refused")
        else:
            state = self._sender.finished_state
            kept = await asyncio.shield(self._outbox.finish(rows, state))
            if kept < len(rows):
                log.warning("destination %s: %d delivered rows had been re-claimed after their "
                            "lease ran out; they may be sent twice (Meta deduplicates by "
                            "event_id)", self.settings.name, len(rows) - kept)
            self._count(state, rows)
        settled.update(row.id for row in rows)

    async def _retry(
        self, rows: list[ClaimedRow], reason: str, min_delay: float, outcome: str
    ) -> None:
        if not rows:
            return
        attempts = max(row.attempts for row in rows)
        delay = max(min_delay, backoff_delay(attempts, self.settings.retry_base_seconds,
                                             self.settings.retry_max_seconds, self._rng))
        log.warning("destination %s: %d events will be retried in %.1fs: %s",
                    self.settings.name, len(rows), delay, reason)
        await asyncio.shield(self._outbox.retry_later(rows, delay, reason))
        self._outbox.wakeup(self.settings.name).set()  # the idle loop re-reads the next due time
        self._count(outcome, rows)

    def _count(self, outcome: str, rows: Sequence[ClaimedRow]) -> None:
        name = self.settings.name
        self._metrics.inc("gateway_relay_requests_total", destination=name, outcome=outcome)
        self._metrics.inc("gateway_relay_events_total", len(rows), destination=name,
                          outcome=outcome)
