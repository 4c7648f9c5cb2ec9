"""Reload config.yaml while serving: on SIGHUP and when the file changes (polled).

The new file is validated in full first; if anything is wrong the gateway keeps the last good
settings and reports the error (log, /status). What applies without a restart: each existing
destination's settings, tokens above all (a new token lifts a token pause), except
`max_in_flight` and a switch from live to dry run. Everything else is reported as needing a
restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from .config import Settings, load_settings
from .errors import ConfigError

__all__ = ["ConfigReloader"]

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class ConfigReloader:
    def __init__(
        self,
        settings: Settings,
        apply: Callable[[Settings, Settings], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._apply = apply
        self._clock = clock
        self.loaded_at = clock()
        self.last_error: str | None = None
        self._stamp = _stamp(settings.path) if settings.path else None
        self._lock = asyncio.Lock()

    async def reload(self) -> bool:
        """Validate the file and apply it; keep the last good settings on any error."""
        path = self.settings.path
        if path is None:
            return False
        async with self._lock:
            self._stamp = _stamp(path)
            try:
                new = await asyncio.get_running_loop().run_in_executor(None, load_settings, path)
            except ConfigError as exc:
                self.last_error = "\n".join(exc.problems)
                log.error("config reload failed; keeping the last good config:\n%s",
                          self.last_error)
                return False
            old, self.settings = self.settings, new
            self._apply(old, new)
            self.loaded_at = self._clock()
            self.last_error = None
            log.info("config reloaded from %s", path)
            return True

    async def watch(self) -> None:
        """Poll the file; reload when it changes."""
        path = self.settings.path
        if path is None:
            return
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if _stamp(path) != self._stamp:
                try:
                    await self.reload()
                except Exception:  # a watcher that dies would silently stop all reloads
                    log.exception("config reload failed unexpectedly; still watching")
