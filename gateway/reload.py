"""Reload what is built from files while serving: config.yaml and the rule files alike.

A `Reloader` rebuilds its value when its files change (their stamps are polled) and when asked
(SIGHUP). The new value is built aside, off the event loop, and applied only if the build
succeeds in full; otherwise the last good value keeps serving and the error is kept for /status
and logged. One reload runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from .errors import GatewayError, ProblemsError
from .problems import Problem

__all__ = ["POLL_SECONDS", "Reloader", "file_stamp", "folder_stamps"]

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
T = TypeVar("T")


def file_stamp(path: Path) -> tuple[int, int] | None:
    """Modification time and size of a file (None when it cannot be read)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def folder_stamps(*folders: Path) -> dict[str, tuple[int, int]]:
    """Stamps of every YAML file directly in the folders."""
    stamps = {}
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith((".yaml", ".yml")) and entry.is_file():
                stat = entry.stat()
                stamps[entry.path] = (stat.st_mtime_ns, stat.st_size)
    return stamps


class Reloader(Generic[T]):
    """`build` makes a new value (blocking; raises a GatewayError listing every problem),
    `apply` puts it in force; `stamp` says whether the files changed since the last build."""

    def __init__(
        self,
        what: str,
        *,
        stamp: Callable[[], object],
        build: Callable[[], T],
        apply: Callable[[T], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.what = what
        self._stamp_of = stamp
        self._build = build
        self._apply = apply
        self._clock = clock
        self._stamp: object = stamp()
        self._lock = asyncio.Lock()
        self.loaded_at: float | None = None
        self.last_error: str | None = None
        self.last_problems: list[Problem] = []  # the last error's, located (file, line)
        self.failed_reloads = 0

    def in_force(self) -> str:
        """What keeps serving when a reload fails, for the log line."""
        return f"the last good {self.what}"

    def started(self) -> None:
        """The value in force was built elsewhere (the CLI read the config) just now."""
        self._stamp = self._stamp_of()
        self.loaded_at = self._clock()

    async def load(self) -> None:
        """The first build: its error stops start-up instead of being kept."""
        async with self._lock:
            self._stamp = self._stamp_of()
            value = await asyncio.get_running_loop().run_in_executor(None, self._build)
            self._apply(value)
            self.loaded_at = self._clock()

    async def reload(self) -> bool:
        """Build a new value aside and apply it; keep the last good one on any error."""
        async with self._lock:
            self._stamp = self._stamp_of()
            try:
                value = await asyncio.get_running_loop().run_in_executor(None, self._build)
            except GatewayError as exc:
                self.last_error = str(exc)
                self.last_problems = list(exc.problems) if isinstance(exc, ProblemsError) else []
                self.failed_reloads += 1
                log.error("%s reload failed; keeping %s:\n%s", self.what, self.in_force(),
                          self.last_error)
                return False
            self._apply(value)
            self.loaded_at = self._clock()
            self.last_error, self.last_problems = None, []
            return True

    async def watch(self) -> None:
        """Poll the stamps; reload when they change."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if self._stamp_of() != self._stamp:
                try:
                    await self.reload()
                except Exception:  # a watcher that dies would silently stop all reloads
                    log.exception("%s reload failed unexpectedly; still watching", self.what)
