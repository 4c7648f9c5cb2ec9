"""This process's view of the console's records (destinations, access keys, sessions made in
the console), kept current across workers and nodes.

The records live in the store (see `Outbox.console_records`). Each process polls the store's
per-kind versions every `interval` and, when one moves, reads that kind's records again and hands
them to the kind's listener: a change made on any worker or node applies everywhere within about
`interval`, and at once on the process that made it (`refresh` after the change). While the store
cannot be read, the last records read stay in force.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .errors import OutboxUnavailable
from .storage import ConsoleRecord, Outbox

__all__ = ["INTERVAL_SECONDS", "RecordWatch"]

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 1.0
Listener = Callable[[list[ConsoleRecord]], None]


class RecordWatch:
    def __init__(self, outbox: Outbox, interval: float = INTERVAL_SECONDS) -> None:
        self._outbox = outbox
        self._interval = interval
        self._listeners: dict[str, Listener] = {}
        self._seen: dict[str, int] = {}
        self._broken: dict[str, int] = {}  # kind -> the version its listener failed on
        self._lock = asyncio.Lock()
        self._failing = False

    def on(self, kind: str, listener: Listener) -> None:
        """Hand `kind`'s records to `listener` now (at the next refresh) and whenever they
        change. One listener per kind."""
        self._listeners[kind] = listener
        self._seen.pop(kind, None)

    async def refresh(self) -> None:
        """Read the versions now and pass on every kind whose records changed; raises
        OutboxUnavailable when the store cannot be read."""
        async with self._lock:  # a poll and a change's refresh never interleave
            versions = await self._outbox.console_versions()
            for kind, listener in list(self._listeners.items()):  # `on` may add one meanwhile
                version = versions.get(kind, 0)
                if self._seen.get(kind) == version:
                    continue
                records = await self._outbox.console_records(kind)
                try:
                    listener(records)
                except Exception:
                    # Not marked seen: the next poll tries again. Said once per version, and
                    # never raised: the change is stored, and the other kinds must still apply.
                    if self._broken.get(kind) != version:
                        log.exception("console records: applying the %s records failed; "
                                      "will try again", kind)
                    self._broken[kind] = version
                    continue
                self._seen[kind] = version
                self._broken.pop(kind, None)

    async def watch(self) -> None:
        """Refresh every `interval`, for ever (cancel to stop)."""
        while True:
            try:
                await self.refresh()
                if self._failing:
                    log.info("console records: the store answers again")
                self._failing = False
            except OutboxUnavailable as exc:
                if not self._failing:
                    log.warning("console records: cannot read the store (%s); keeping the "
                                "last ones read", exc)
                self._failing = True
            except Exception:
                log.exception("console records: refreshing failed; will try again")
            await asyncio.sleep(self._interval)
