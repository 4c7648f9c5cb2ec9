"""The live rule set: built aside, tested, swapped in one assignment, reloaded while serving.

A new set (on SIGHUP, or when a file under the rules folder changes) is loaded and its tests
(`rules/tests/*.yaml`) are run, off the event loop. Only if both succeed does `current` change;
otherwise the last good set keeps serving and the error is reported (log, /status, metric). A
hit reads `current` once, so it never sees half a rule set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .live import Live
from .model import Event
from .rules import RuleError, RuleSet, RuleStats, load_rule_set, run_rule_tests
from .settings import DestinationSettings

__all__ = ["LiveRules", "build_rule_set"]

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0


def build_rule_set(
    path: Path, destinations: Sequence[DestinationSettings], prepare: Callable[[Event], None]
) -> RuleSet:
    """Load the rule files and run their tests; RuleError lists every problem or failure."""
    rule_set = load_rule_set(path, [d.name for d in destinations])
    failed = [r for r in run_rule_tests(rule_set, path / "tests", destinations, prepare)
              if not r.passed]
    if failed:
        raise RuleError([f"{r.location}: test '{r.name}' failed: {r.message}" for r in failed])
    return rule_set


def _stamps(path: Path) -> dict[str, tuple[int, int]]:
    """Modification time and size of every file that defines the rule set."""
    stamps = {}
    for folder in (path, path / "tests"):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith((".yaml", ".yml")) and entry.is_file():
                stat = entry.stat()
                stamps[entry.path] = (stat.st_mtime_ns, stat.st_size)
    return stamps


class LiveRules:
    def __init__(
        self,
        path: Path,
        live: Live,
        prepare: Callable[[Event], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._live = live
        self._prepare = prepare
        self._clock = clock
        self.current = RuleSet()
        self.stats = RuleStats()  # kept across reloads
        self.loaded_at: float | None = None
        self.last_error: str | None = None
        self.failed_reloads = 0
        self._stamps: dict[str, tuple[int, int]] = {}
        self._lock = asyncio.Lock()

    def _build(self) -> RuleSet:
        """A new set, tested against the destinations in force (the live snapshot's)."""
        return build_rule_set(self.path, self._live.current.settings.destinations, self._prepare)

    async def load(self) -> None:
        """The first load: a rule set that does not load or pass its tests stops start-up."""
        self._stamps = _stamps(self.path)
        self.current = await asyncio.get_running_loop().run_in_executor(
            None, self._build)
        self.loaded_at = self._clock()
        log.info("rules: %d loaded from %s (rule set %s)", len(self.current.rules), self.path,
                 self.current.hash)

    async def reload(self) -> bool:
        """Build and test a new set aside; swap it in only if everything passes."""
        async with self._lock:
            self._stamps = _stamps(self.path)
            try:
                new = await asyncio.get_running_loop().run_in_executor(
                    None, self._build)
            except RuleError as exc:
                self.last_error = "\n".join(exc.problems)
                self.failed_reloads += 1
                log.error("rules reload failed; keeping rule set %s:\n%s", self.current.hash,
                          self.last_error)
                return False
            self.current = new
            self.loaded_at = self._clock()
            self.last_error = None
            log.info("rules reloaded: %d rules (rule set %s)", len(new.rules), new.hash)
            return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if _stamps(self.path) != self._stamps:
                try:
                    await self.reload()
                except Exception:  # a watcher that dies would silently stop all reloads
                    log.exception("rules reload failed unexpectedly; still watching")
