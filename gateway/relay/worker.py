"""One relay worker per destination: claim due rows, send them in batches, record the outcome.

A worker holds at most `max_in_flight` claims at once; each claim is split into one request per
batch key (the destination type's: for Meta, pixel, test_event_code and other top-level fields).
It claims one batch at a time, or, while a backlog lasts, as many at once as its storage engine
can run side by side (`claims_at_once`: SQLite one, PostgreSQL two).
The worker reads its destination from the live snapshot for every request, so a reload applies
to the next one. What it does is the same for every type; the type's `send` classifies the
answer:
- transient failure (network, timeout, 5xx): the rows come back with exponential backoff and
  full jitter; after several in a row the destination's circuit opens (circuit.py): one small
  probe at a time until the platform answers, then the rows that failed meanwhile are due at
  once. Attempts count the requests really made; no number of them dead-letters an event, only
  the platform's time window does (expiry);
- rate limit: the same, and the whole destination waits before its next request (`backoff`);
- refused credentials (Meta's codes 190, 102): the rows go back untried, the destination
  `paused` and an alert raised; it resumes when its credentials change (config reload). Rows
  that age out meanwhile become dead letters with reason `token_revoked`;
- refused destination (the pixel, the app or the token's permissions, not one event): the same
  pause and alert, never a bisection; it resumes when the destination's options change;
- refused event (Meta refuses a whole request for one bad event): the batch is halved until the
  refused events are alone; they become dead letters with the platform's message, the rest is
  delivered.
A destination without credentials (or `dry_run: true`) sends nothing: each batch is logged and
its rows end as `dry_run`. A held one (`held`: a console token that cannot be read) is paused,
its events queued, until it is no longer held. Acknowledgements are shielded from cancellation
and a shutdown gives unsent rows back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from itertools import groupby

import aiohttp

from ..alerts import Alerts
from ..destinations import Destination
from ..destinations.base import DestinationOptions
from ..errors import (
    DestinationRefused,
    OutboxUnavailable,
    Permanent,
    RateLimited,
    Retryable,
    TokenRejected,
)
from ..eventbus import EventBus
from ..live import Live
from ..observe import Metrics
from ..settings import DestinationSettings
from ..storage import Claim, ClaimedRow, Outbox
from .circuit import PROBE_BATCH_SIZE, THRESHOLD, Circuit
from .delivered import answered, log_delivered

__all__ = ["IDLE_POLL_SECONDS", "SHARED_IDLE_POLL_SECONDS", "RelayWorker", "backoff_delay"]

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 5.0
# With several `serve` processes on one outbox, rows committed by another process wake no one
# here: look for them this often instead.
SHARED_IDLE_POLL_SECONDS = 0.25
ERROR_PAUSE_SECONDS = 1.0
EXPIRY_SWEEP_SECONDS = 60.0


async def _first_of(*events: asyncio.Event) -> None:
    """Wait until one of `events` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def backoff_delay(attempts: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempts)]."""
    return float(rng() * min(cap, base * 2.0 ** min(attempts, 32)))


class RelayWorker:
    """Drains one destination's rows from the outbox."""

    def __init__(
        self,
        name: str,
        live: Live,
        outbox: Outbox,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        alerts: Alerts,
        *,
        dedup_seconds: float = 0.0,
        claims_at_once: int = 1,
        idle_poll_seconds: float = IDLE_POLL_SECONDS,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        bus: EventBus | None = None,
    ) -> None:
        self.name = name
        self._bus = bus
        self._live = live
        self._last = live.current.by_name[name]  # kept while stopping after a removal
        self._session = session
        self._idle_poll = idle_poll_seconds
        self._outbox = outbox
        self._metrics = metrics
        self._alerts = alerts
        self._dedup_seconds = dedup_seconds
        self._claims_at_once = claims_at_once  # the engine's (storage.claims_at_once)
        self._backlog = asyncio.Event()  # the last claim came back full: more are due
        self._clock = clock
        self._rng = rng
        # A change of either restarts the worker (relays.py).
        self.type = self._last.settings.type
        self.max_in_flight = self._last.settings.max_in_flight
        self._slots = asyncio.Semaphore(self.max_in_flight)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()  # state changed from outside (new token, stop)
        self._loop_task: asyncio.Task[None] | None = None
        self._backoff_until = 0.0
        self.paused_reason: str | None = None  # why the destination is paused (refused)
        self._paused_credentials: tuple[str, ...] = ()  # the ones refused
        # The options refused, when the platform refused the destination rather than the token.
        self._paused_options: DestinationOptions | None = None
        self.circuit = Circuit(clock, rng)
        self.last_error: str | None = None
        self.last_delivered_at: float | None = None  # when the platform last took a batch
        self._outbox_failing = False  # logged once when the outbox fails, once when it works
        self._held = False  # paused because the settings say `held`

    @property
    def destination(self) -> Destination:
        """The destination as the live snapshot has it now; once stopping, as it was then (a
        worker restarted for a new type finishes its batches with the old one)."""
        if not self._stopping.is_set():
            current = self._live.current.by_name.get(self.name)
            if current is not None:
                self._last = current
        return self._last

    @property
    def settings(self) -> DestinationSettings:
        return self.destination.settings

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def token_invalid(self) -> bool:
        """Paused because the platform refused the credentials (not the destination itself)."""
        return self.paused_reason is not None and self._paused_options is None

    @property
    def state(self) -> str:
        if self.paused_reason is not None:
            return "paused"
        if self._backoff_until > self._clock() or self.circuit.is_open:
            return "backoff"
        return "active"

    def start(self) -> None:
        self._follow_hold()
        self._loop_task = asyncio.create_task(self._run(), name=f"relay:{self.name}")

    def notice(self) -> None:
        """The live settings changed (config reload): new credentials lift a pause (after the
        destination itself was refused, any change of its options does)."""
        options = self.destination.settings.options
        if self.paused_reason is not None and (
                options != self._paused_options if self._paused_options is not None
                else options.credentials != self._paused_credentials):
            log.info("destination %s: %s changed; resuming delivery", self.name,
                     "its options" if self._paused_options is not None else "credentials")
            self.paused_reason = None
        self._follow_hold()
        self._changed.set()
        self._outbox.wakeup(self.name).set()

    def _follow_hold(self) -> None:
        """Pause while the settings hold the destination (its events stay queued); resume
        when they stop."""
        held = self.destination.settings.held
        if held:
            self.paused_reason, self._held = held, True
            self._paused_credentials, self._paused_options = (), None
        elif self._held:
            log.info("destination %s: no longer held; resuming delivery", self.name)
            self.paused_reason, self._held = None, False

    def retire(self) -> None:
        """Stop claiming now, and keep the destination as it is for the batches in flight."""
        self._stopping.set()
        self._changed.set()
        self._outbox.wakeup(self.name).set()

    async def stop(self, timeout: float) -> None:
        """Stop claiming; let in-flight batches finish within `timeout`, then release the rest."""
        self.retire()
        try:
            await asyncio.wait_for(self._drain(), timeout)
        except TimeoutError:
            late = [task for task in self._tasks() if not task.done()]
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            log.warning("destination %s: %d batches cut short at shutdown; their events stay "
                        "queued", self.name, len(late))

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
        await asyncio.gather(self._claim_loop(),
                             *(self._claim_ahead() for _ in range(self._claims_at_once - 1)))

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.paused_reason is not None:
                    await self._while_paused()
                    continue
                wait = max(self._backoff_until - self._clock(), self.circuit.wait())
                if wait > 0:
                    await self._pause(wait)
                    continue
                # Asked each time: an outbox that opened late hands out new events.
                await self._claim_once(self._outbox.wakeup(self.name))
            except Exception as exc:
                self._backlog.clear()
                # The outbox hiccuped (disk full, lock, not open yet): keep the worker alive
                # and try again shortly, without a line per attempt.
                if not self._outbox_failing:
                    log.error("destination %s: outbox error; retrying until it works: %s",
                              self.name, exc, exc_info=not isinstance(exc, OutboxUnavailable))
                self._outbox_failing = True
                await self._pause(ERROR_PAUSE_SECONDS)

    async def _claim_once(self, wakeup: asyncio.Event) -> None:
        claimed = await self._claim(wakeup)
        if claimed is None:
            return
        claim, task, probing = claimed
        if probing and task is not None:
            await asyncio.wait([task])
            return
        if self._full(claim):
            self._backlog.set()
            return  # a backlog: claim the next batch at once (and ahead: _claim_ahead)
        self._backlog.clear()
        if claim.rows:
            # Live traffic: let the next batch fill for `linger_ms` rather than sending a
            # request per handful of events (each request costs a claim, a send and an ack).
            await self._linger()
        elif not self._set_aside(claim):
            await self._idle(wakeup)

    async def _claim_ahead(self) -> None:
        """One more claim at a time while a backlog lasts, beside the claiming loop's, for an
        engine whose claims can run at once (`claims_at_once`): a claim is a round trip of
        tens of milliseconds, and one at a time bounded a drain on PostgreSQL to one batch per
        claim's latency. It never claims while the loop waits (idle, linger, backoff, pause,
        an open circuit's probes) and leaves errors to the loop, which meets them too."""
        while not self._stopping.is_set():
            if not self._backlog.is_set():
                await _first_of(self._backlog, self._stopping)
                continue
            try:
                claimed = await self._claim(None)
            except Exception as exc:
                log.debug("destination %s: claim ahead failed: %r", self.name, exc)
                claimed = None
            if claimed is None or not self._full(claimed[0]):
                self._backlog.clear()

    async def _claim(
        self, wakeup: asyncio.Event | None
    ) -> tuple[Claim, asyncio.Task[None] | None, bool] | None:
        """Take a slot, claim a batch and hand its rows to a delivery task: (the claim, the
        task, whether it was a probe of an open circuit); None when it must not claim now.
        `wakeup` is None for a claim ahead (_claim_ahead)."""
        await self._slots.acquire()
        handed_off = False
        try:
            # Read after the wait for a slot: a batch in flight may have opened the circuit.
            if (self._stopping.is_set() or self.paused_reason is not None
                    or self.circuit.wait() > 0
                    or (wakeup is None and (self.circuit.is_open
                                            or self._backoff_until > self._clock()))):
                return None
            probing = self.circuit.is_open  # one small batch at a time, awaited before the next
            if wakeup is not None:
                wakeup.clear()
            claim = await self._outbox.claim(
                self.name, PROBE_BATCH_SIZE if probing else self.settings.batch_size,
                dedup_seconds=self._dedup_seconds,
            )
            if self._outbox_failing:
                log.info("destination %s: the outbox works again", self.name)
                self._outbox_failing = False
            if claim.expired:
                self._metrics.dead_letters.labels(self.name, "expired").inc(claim.expired)
            if claim.duplicates:
                self._metrics.duplicates.labels(self.name).inc(claim.duplicates)
            if claim.broken:
                self._metrics.dead_letters.labels(self.name, "invalid").inc(claim.broken)
            task = None
            if claim.rows:
                task = asyncio.create_task(self._deliver(claim.rows))
                self._in_flight.add(task)
                task.add_done_callback(self._delivered)
                handed_off = True
            return claim, task, probing
        finally:
            if not handed_off:
                self._slots.release()

    @staticmethod
    def _set_aside(claim: Claim) -> int:
        return claim.expired + claim.duplicates + claim.broken

    def _full(self, claim: Claim) -> bool:
        """A claim that took a whole batch: more are due (a backlog)."""
        return len(claim.rows) + self._set_aside(claim) >= self.settings.batch_size

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Only the outbox failing while recording an outcome gets here; the lease brings
            # the rows back.
            log.error("destination %s: could not record a delivery outcome: %r", self.name,
                      task.exception())

    async def _idle(self, wakeup: asyncio.Event) -> None:
        """Sleep until new rows arrive or the next retry falls due; then linger for a batch.

        While waiting it only reads when rows fall due (a read never takes the write lock that
        ingest, and with `serve --workers N` other processes, commit under); a claim, which
        does, follows only once something is due."""
        while not self._stopping.is_set():
            due = await self._outbox.next_due(self.name)
            wait = self._idle_poll if due is None else due - self._clock()
            if wait <= 0:
                return  # a retry fell due, or another process committed rows
            # Woken by new rows, or by a stop: the wake-up event is shared with the worker that
            # replaces this one on a reload, whose claims clear it, so a stop could be missed.
            woke = asyncio.ensure_future(wakeup.wait())
            stop = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait((woke, stop), timeout=min(wait, self._idle_poll),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                woke.cancel()
                stop.cancel()
            if not woke.done() or woke.cancelled() or self._stopping.is_set():
                continue  # the next turn of the loop stops, or reads the due time again
            await self._linger()
            return

    async def _linger(self) -> None:
        if self.settings.linger_ms > 0:
            await self._pause(self.settings.linger_ms / 1000)

    async def _while_paused(self) -> None:
        """Claim nothing; age out what Meta would refuse anyway; wait for a new token."""
        self._changed.clear()  # before the sweep: a new token arriving during it is not lost
        expired = await self._outbox.expire(self.name, reason="token_revoked")
        if expired:
            self._metrics.dead_letters.labels(self.name, "token_revoked").inc(expired)
        if self.paused_reason is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), EXPIRY_SWEEP_SECONDS)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when stopping or when told of a change."""
        self._changed.clear()
        if self._stopping.is_set():  # a stop that came while busy must not wait a linger out
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)

    # -- delivering -----------------------------------------------------------------------------
    async def _deliver(self, rows: list[ClaimedRow]) -> None:
        settled: set[int] = set()
        try:
            key = self.destination.batch_key
            for _, group in groupby(sorted(rows, key=key), key=key):
                await self._send(list(group), settled)
        except asyncio.CancelledError:
            await asyncio.shield(self._outbox.release([r for r in rows if r.id not in settled]))
            raise
        except Exception as exc:
            log.exception("destination %s: unexpected error while sending", self.name)
            unsent = [r for r in rows if r.id not in settled]
            await self._retry(unsent, f"internal error: {type(exc).__name__}", 0.0, "error")
        finally:
            self._slots.release()

    async def _send(self, rows: list[ClaimedRow], settled: set[int]) -> None:
        if self.paused_reason is not None:  # an earlier batch found the credentials refused
            await asyncio.shield(self._outbox.release(rows))
            settled.update(row.id for row in rows)
            return
        destination = self.destination  # a reload may swap it while this request is in flight
        if destination.settings.is_dry_run:
            log.info("dry run (%s): destination %s would %s", destination.settings.dry_run_reason,
                     self.name, destination.describe_batch(rows))
            self._tell("dry_run", destination, rows,
                       f"nothing sent: dry run ({destination.settings.dry_run_reason})")
            await self._finish(rows, "dry_run")
            settled.update(row.id for row in rows)
            return
        started = time.perf_counter()
        try:
            answer = await destination.send(self._session, rows)
        except RateLimited as exc:
            self._tell("rate_limited", destination, rows, exc.reason)
            self._backoff_until = max(self._backoff_until, self._clock() + exc.min_delay)
            await self._retry(rows, exc.reason, exc.min_delay, "rate_limited")
        except Retryable as exc:
            self._tell("retry", destination, rows, exc.reason)
            opened = self.circuit.failed()
            await self._retry(rows, exc.reason, exc.min_delay, "retry",
                              quiet=self.circuit.is_open)
            if opened:
                log.warning("destination %s: circuit open after %d transient failures in a row "
                            "(last: %s); sending one probe at a time until it answers",
                            self.name, THRESHOLD, exc.reason)
        except DestinationRefused as exc:
            self._tell("token_rejected" if isinstance(exc, TokenRejected)
                       else "destination_refused", destination, rows, exc.reason)
            await self._answered()
            options, now = destination.settings.options, self.destination.settings.options
            current = (options.credentials == now.credentials if isinstance(exc, TokenRejected)
                       else options == now)
            if current:  # paused before the rows go back, so that no claim takes them again
                self._refused(exc, options)
            await asyncio.shield(self._outbox.release(rows))
            self._count("token_rejected" if isinstance(exc, TokenRejected)
                        else "destination_refused", rows)
            if not current:  # old settings' late answer: send them again now, with the new
                self._outbox.wakeup(self.name).set()
        except Permanent as exc:
            self._tell("refused" if len(rows) > 1 else "dead", destination, rows, exc.reason)
            if len(rows) > 1:
                # Meta refuses a whole request for one bad event: halve until it is alone.
                self._count("refused", rows)
                middle = len(rows) // 2
                await self._send(rows[:middle], settled)
                await self._send(rows[middle:], settled)
                return
            await self._answered()
            await self._dead_letter(rows, exc.reason, exc.fbtrace_id)
        else:
            log_delivered(self.name, destination, rows, answer)
            self._tell("delivered", destination, rows, answered(destination, answer))
            self.last_delivered_at = self._clock()
            await self._answered()
            await self._finish(rows, "delivered")
        finally:
            self._metrics.latency.labels(self.name).observe(time.perf_counter() - started)
        settled.update(row.id for row in rows)

    def _tell(self, outcome: str, destination: Destination, rows: Sequence[ClaimedRow],
              answer: str) -> None:
        """The batch and its answer, for whoever watches the live events (nothing is built
        when no one does)."""
        if self._bus is not None and self._bus.listening:
            self._bus.outgoing(self.name, outcome, rows, destination.describe_batch(rows),
                               answer, self._clock())

    async def _finish(self, rows: list[ClaimedRow], state: str) -> None:
        kept = await asyncio.shield(self._outbox.finish(rows, state))
        if kept < len(rows):
            log.warning("destination %s: %d delivered rows had been re-claimed after their lease "
                        "ran out; they may be sent twice (Meta deduplicates by event_id)",
                        self.name, len(rows) - kept)
        self._metrics.batch_size.labels(self.name).observe(len(rows))
        self._count(state, rows)
        self.last_error = None

    async def _dead_letter(self, rows: list[ClaimedRow], reason: str,
                           fbtrace_id: str | None) -> None:
        log.error("destination %s: event %s refused, kept as a dead letter: %s", self.name,
                  rows[0].event_id, reason)
        await asyncio.shield(self._outbox.dead_letter(rows, "invalid", reason, fbtrace_id))
        self._metrics.dead_letters.labels(self.name, "invalid").inc(len(rows))
        self._count("dead", rows)

    async def _answered(self) -> None:
        """The platform answered: close the circuit if it was open, and send at once what
        failed during the outage."""
        outage = self.circuit.answered()
        if outage is None:
            return
        due = await asyncio.shield(self._outbox.retry_now(self.name))
        self._outbox.wakeup(self.name).set()
        log.info("destination %s: circuit closed: the platform answers again after %.1fs and "
                 "%d requests; %d waiting events are due now", self.name, outage.seconds,
                 outage.requests, due)

    def _refused(self, exc: DestinationRefused, options: DestinationOptions) -> None:
        self.last_error = exc.reason
        if self.paused_reason is not None:
            return
        kind = self.destination.kind
        if isinstance(exc, TokenRejected):
            self.paused_reason = f"{kind.credentials_name} refused"
            self._paused_credentials, self._paused_options = options.credentials, None
            self._alerts.raise_alert(
                "token_invalid", self.name,
                f"{kind.vendor} refused the {kind.credentials_name} ({exc.reason}); delivery is "
                f"paused and events stay queued. Put a new {kind.credentials_name} in the "
                "config file: delivery resumes as soon as the gateway reloads it (it watches "
                "the file; SIGHUP reloads at once). One given through an environment variable "
                "needs a restart with the new value: a running process's environment cannot "
                "change.",
            )
            return
        self.paused_reason = f"{kind.vendor} refused the destination"
        self._paused_options = options
        self._alerts.raise_alert(
            "destination_refused", self.name,
            f"{kind.vendor} refused {self.destination.target} ({exc.reason}): not one event but "
            f"the destination itself (its id, the app, or the {kind.credentials_name}'s "
            "permissions). Delivery is paused and events stay queued; fix it and change the "
            "destination's config (or restart) to resume.",
        )

    async def _retry(
        self, rows: list[ClaimedRow], reason: str, min_delay: float, outcome: str, *,
        quiet: bool = False,
    ) -> None:
        if not rows:
            return
        attempts = max(row.attempts for row in rows)
        delay = max(min_delay, backoff_delay(attempts, self.settings.retry_base_seconds,
                                             self.settings.retry_max_seconds, self._rng))
        # While the circuit is open its state changes are the lines worth reading.
        log.log(logging.DEBUG if quiet else logging.WARNING,
                "destination %s: %d events will be retried in %.1fs: %s",
                self.name, len(rows), delay, reason)
        self.last_error = reason
        await asyncio.shield(self._outbox.retry_later(rows, delay, reason))
        self._outbox.wakeup(self.name).set()  # the idle loop re-reads the next due time
        self._count(outcome, rows)

    def _count(self, outcome: str, rows: Sequence[ClaimedRow]) -> None:
        self._metrics.requests.labels(self.name, outcome).inc()
        self._metrics.events.labels(self.name, outcome).inc(len(rows))
