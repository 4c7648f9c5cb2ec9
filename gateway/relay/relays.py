"""The relay workers of the relaying process, one per live destination, kept in step with the
live snapshot: a reload that adds a destination starts its worker, one that removes a
destination stops its worker (its queued events stay, shown on /status, and go out if it comes
back), and one that changes a destination's type or `max_in_flight` restarts its worker. Every
other change reaches the running workers through the snapshot they read; they are only told to
look (new credentials lift a pause).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

from ..live import Live, Snapshot
from .worker import RelayWorker

__all__ = ["Relays"]

log = logging.getLogger(__name__)

# A worker stopped by a reload gets this long for its in-flight batches; the rest go back.
RELOAD_STOP_SECONDS = 10.0


class Relays:
    def __init__(self, live: Live, make_worker: Callable[[str], RelayWorker]) -> None:
        self._live = live
        self._make_worker = make_worker
        self._workers: dict[str, RelayWorker] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._unlisten: Callable[[], None] | None = None

    def __iter__(self) -> Iterator[RelayWorker]:
        return iter(list(self._workers.values()))

    def get(self, name: str) -> RelayWorker | None:
        return self._workers.get(name)

    def start(self) -> None:
        for destination in self._live.current.destinations:
            self._start(destination.name)
        self._unlisten = self._live.listen(self._changed)

    async def stop(self, timeout: float) -> None:
        """Stop every worker: in-flight batches get `timeout`, unsent rows go back."""
        if self._unlisten is not None:
            self._unlisten()
        workers, self._workers = list(self._workers.values()), {}
        await asyncio.gather(*(w.stop(timeout) for w in workers), *self._stopping)

    def _start(self, name: str) -> None:
        worker = self._make_worker(name)
        self._workers[name] = worker
        worker.start()

    def _retire(self, name: str) -> None:
        worker = self._workers.pop(name)
        worker.retire()  # at once: no request after this swap may use the new settings
        task = asyncio.get_running_loop().create_task(worker.stop(RELOAD_STOP_SECONDS))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _changed(self, _old: Snapshot, new: Snapshot) -> None:
        for name in list(self._workers):
            if name not in new.by_name:
                log.info("destination %s removed: its worker stops; its queued events stay",
                         name)
                self._retire(name)
        for destination in new.destinations:
            name = destination.name
            worker = self._workers.get(name)
            if worker is None:
                log.info("destination %s added: starting its worker", name)
                self._start(name)
            elif (worker.type != destination.settings.type
                  or worker.max_in_flight != destination.settings.max_in_flight):
                log.info("destination %s changed type or max_in_flight: restarting its worker",
                         name)
                self._retire(name)
                self._start(name)
            else:
                worker.notice()
