"""This process's report of itself, written to the store every `REPORT_SECONDS`: who it is, its
relay state per destination it relays, and its events received and delivered per minute over
the last hour. One upsert per process per interval (and the forgetting of processes silent for
`FORGET_SECONDS`, in the same transaction)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiohttp import web

from .. import __version__, appkeys
from ..errors import OutboxUnavailable
from .identity import ProcessId

__all__ = ["FORGET_SECONDS", "GONE_SECONDS", "REPORT_SECONDS", "Minutes", "Reporter"]

log = logging.getLogger(__name__)

REPORT_SECONDS = 5.0
GONE_SECONDS = 3 * REPORT_SECONDS  # a process silent this long is shown as gone
CHART_SECONDS = 3600  # the chart's hour
# ... and forgotten once its counts have left the chart.
FORGET_SECONDS = float(CHART_SECONDS)


class Minutes:
    """Events received and delivered per minute over the last hour, from this process's running
    totals sampled now and then (a sample's growth counts in the minute it is taken)."""

    def __init__(self) -> None:
        self._minutes: dict[int, list[int]] = {}
        self._totals = (0, 0)

    def sample(self, now: float, received: int, delivered: int) -> None:
        minute = int(now // 60 * 60)
        grown = (received - self._totals[0], delivered - self._totals[1])
        self._totals = (received, delivered)
        if any(grown):
            counts = self._minutes.setdefault(minute, [0, 0])
            counts[0] += grown[0]
            counts[1] += grown[1]
        for old in [m for m in self._minutes if m <= minute - CHART_SECONDS]:
            del self._minutes[old]

    def rows(self) -> list[list[int]]:
        """[minute's start, received, delivered] for each minute that counted some."""
        return [[minute, *counts] for minute, counts in sorted(self._minutes.items())]


class Reporter:
    def __init__(self, app: web.Application, process: ProcessId) -> None:
        self._app = app
        self.process = process
        self.started_at = app[appkeys.CLOCK]()
        self._minutes = Minutes()
        self._errors: dict[str, tuple[str, float]] = {}  # destination -> (last error, seen at)
        self._soon = asyncio.Event()

    def current(self, now: float) -> dict[str, Any]:
        """The report as of now (the answering process shows itself from this, not from the
        store)."""
        app = self._app
        metrics = app[appkeys.METRICS]
        self._minutes.sample(now, metrics.received, metrics.delivered_total())
        destinations = {}
        for worker in app.get(appkeys.RELAYS, ()):
            error = worker.last_error
            if error is None:
                self._errors.pop(worker.name, None)
            elif self._errors.get(worker.name, ("", 0.0))[0] != error:
                self._errors[worker.name] = (error, now)  # when this process first saw it
            destinations[worker.name] = {
                "state": worker.state,
                "paused_reason": worker.paused_reason,
                "token_invalid": worker.token_invalid,
                "circuit": worker.circuit.status(),
                "last_delivery": worker.last_delivered_at,
                "last_error": error,
                "last_error_at": self._errors[worker.name][1] if error is not None else None,
            }
        _, relays = app[appkeys.WORKER]
        process = self.process
        return {"node": process.node, "worker": process.worker, "pid": process.pid,
                "relays": relays, "version": __version__, "started_at": self.started_at,
                "destinations": destinations, "minutes": self._minutes.rows()}

    async def report(self, **also: Any) -> None:
        now = self._app[appkeys.CLOCK]()
        body = orjson.dumps({**self.current(now), **also})
        await self._app[appkeys.OUTBOX].put_report(self.process.id, self.started_at, body,
                                                   forget_before=now - FORGET_SECONDS)

    def soon(self) -> None:
        """Report now rather than at the next interval (the destinations changed: the others
        should not show a new one as relayed by nobody for a whole interval)."""
        self._soon.set()

    async def run(self) -> None:
        """Report every REPORT_SECONDS while the process serves, and soon after `soon`."""
        while True:
            self._soon.clear()
            try:
                await self.report()
            except OutboxUnavailable:
                pass  # said elsewhere (readiness, /status); the next report tries again
            except Exception:
                log.exception("writing this process's report to the store failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._soon.wait(), REPORT_SECONDS)

    async def stopped(self) -> None:
        """A last report at shutdown, so that the others show this process gone at once."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.report(stopped=True)
