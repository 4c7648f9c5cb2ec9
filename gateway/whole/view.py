"""The whole gateway as the console shows it: every process's last report (this process's
own as of now), which are live and which gone, each destination's relay state merged over the
live processes that relay it, and the events per minute summed over every process."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .. import appkeys
from ..errors import OutboxUnavailable
from .report import CHART_SECONDS, GONE_SECONDS, REPORT_SECONDS, Reporter

__all__ = ["GONE_SHOWN", "REPORTER", "WholeView", "whole_view"]

log = logging.getLogger(__name__)

REPORTER = web.AppKey("reporter", Reporter)
GONE_SHOWN = 20  # gone processes listed (the most recently seen); all count in the chart
_WORSE = {"active": 0, "backoff": 1, "paused": 2}  # merged: the worst state where relayed


@dataclass
class Process:
    id: str
    seen_at: float
    report: dict[str, Any]
    gone: bool
    answered: bool = False  # the process that answers this request


@dataclass
class WholeView:
    now: float
    processes: list[Process]
    unavailable: str | None = None  # why only this process is shown
    _live: list[Process] = field(init=False)

    def __post_init__(self) -> None:
        self._live = [p for p in self.processes if not p.gone]

    def relay(self, destination: str) -> dict[str, Any] | None:
        """`destination`'s relay state merged over the live processes relaying it (None: no
        live process relays it): the worst state (paused, where it is paused, with why), the
        newest delivery, the newest error, and which processes relay it."""
        states = [(p, p.report["destinations"][destination]) for p in self._live
                  if destination in p.report.get("destinations", {})]
        if not states:
            return None
        worst = max((state for _, state in states), key=lambda s: _WORSE.get(s["state"], 0))
        errors = [state for _, state in states if state.get("last_error")]
        newest = max(errors, key=lambda s: s.get("last_error_at") or 0.0) if errors else {}
        deliveries = [s["last_delivery"] for _, s in states if s.get("last_delivery")]
        return {
            "state": worst["state"], "paused_reason": worst.get("paused_reason"),
            "circuit": worst.get("circuit"),
            "token_invalid": any(s.get("token_invalid") for _, s in states),
            "last_delivery": max(deliveries) if deliveries else None,
            "last_error": newest.get("last_error"), "last_error_at": newest.get("last_error_at"),
            "relayed_by": [p.id for p, _ in states],
        }

    def listed(self) -> list[dict[str, Any]]:
        """The processes for people: the live ones, then the most recently seen gone ones
        (times as Unix seconds)."""
        gone = sorted((p for p in self.processes if p.gone), key=lambda p: -p.seen_at)
        return [self._describe(p) for p in self._live + gone[:GONE_SHOWN]]

    def _describe(self, process: Process) -> dict[str, Any]:
        report = process.report
        return {
            "id": process.id, "node": report.get("node"), "worker": report.get("worker"),
            "pid": report.get("pid"), "relays": report.get("relays"),
            "version": report.get("version"), "started_at": report.get("started_at"),
            "seen_at": process.seen_at,
            "seen_seconds_ago": round(max(0.0, self.now - process.seen_at), 1),
            "gone": process.gone, "answered": process.answered,
        }

    def traffic(self) -> dict[str, Any]:
        """Events received and delivered per minute over the last hour, every process summed
        (gone ones too: their counts happened), oldest minute first."""
        last = int(self.now // 60 * 60)
        first = last - CHART_SECONDS + 60
        received, delivered = [0] * (CHART_SECONDS // 60), [0] * (CHART_SECONDS // 60)
        for process in self.processes:
            for row in process.report.get("minutes", []):
                minute, got, sent = (int(value) for value in row)
                if first <= minute <= last:
                    received[(minute - first) // 60] += got
                    delivered[(minute - first) // 60] += sent
        return {
            "minutes": [first + 60 * n for n in range(CHART_SECONDS // 60)],
            "received": received, "delivered": delivered,
            "received_total": sum(received), "delivered_total": sum(delivered),
            "processes": len(self.processes), "reported_every_seconds": REPORT_SECONDS,
            "unavailable": self.unavailable,
        }


async def whole_view(app: web.Application) -> WholeView:
    """Every process's last report from the store, this process's as of now; with the store
    unavailable, this process only (and why)."""
    reporter, now = app[REPORTER], app[appkeys.CLOCK]()
    own = Process(reporter.process.id, now, reporter.current(now), gone=False, answered=True)
    try:
        stored = await app[appkeys.OUTBOX].reports()
    except OutboxUnavailable as exc:
        return WholeView(now, [own], str(exc))
    processes = [own]
    for row in stored:
        if row.process == own.id:
            continue
        try:
            report = orjson.loads(row.report)
        except orjson.JSONDecodeError:
            log.warning("the store holds an unreadable report of process %s", row.process)
            continue
        if not _readable(report):
            log.warning("the store holds a report of process %s in an unknown shape",
                        row.process)
            continue
        gone = bool(report.get("stopped")) or now - row.seen_at > GONE_SECONDS
        processes.append(Process(row.process, row.seen_at, report, gone))
    return WholeView(now, processes)


def _readable(report: object) -> bool:
    """A report in the shape this version writes (another version's may differ: it is then
    left out rather than break every answer)."""
    if not isinstance(report, dict):
        return False
    destinations, minutes = report.get("destinations"), report.get("minutes")
    return (isinstance(destinations, dict)
            and all(isinstance(state, dict) and isinstance(state.get("state"), str)
                    for state in destinations.values())
            and isinstance(minutes, list)
            and all(isinstance(row, list) and len(row) == 3
                    and all(isinstance(n, int) for n in row) for row in minutes))
