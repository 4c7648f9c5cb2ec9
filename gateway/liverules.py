"""The live rule set: built aside, tested, swapped in one assignment, reloaded while serving.

A new set (on SIGHUP, or when a file under the rules folder changes) is loaded and its tests
(`rules/tests/*.yaml`) are run against the destinations in force, off the event loop. Only if
both succeed does `current` change; otherwise the last good set keeps serving and the error is
reported (log, /status, metric). A hit reads `current` once, so it never sees half a rule set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from .live import Live
from .model import Event
from .problems import Problem
from .reload import Reloader, folder_stamps
from .rules import CaseResult, RuleError, RuleSet, RuleStats, load_rule_set, run_rule_tests
from .settings import DestinationSettings

__all__ = ["LiveRules", "build_rule_set"]

log = logging.getLogger(__name__)


def build_rule_set(
    path: Path, destinations: Sequence[DestinationSettings], prepare: Callable[[Event], None]
) -> RuleSet:
    """Load the rule files and run their tests; RuleError lists every problem or failure."""
    return _build(path, destinations, prepare)[0]


def _build(
    path: Path, destinations: Sequence[DestinationSettings], prepare: Callable[[Event], None]
) -> tuple[RuleSet, list[CaseResult]]:
    """The rule set and its tests' results (all passed)."""
    rule_set = load_rule_set(path, [d.name for d in destinations])
    results = run_rule_tests(rule_set, path / "tests", destinations, prepare)
    failed = [r for r in results if not r.passed]
    if failed:
        raise RuleError([Problem(r.file, r.line, message=f"test '{r.name}' failed: {r.message}")
                         for r in failed])
    return rule_set, results


class LiveRules(Reloader[tuple[RuleSet, list[CaseResult]]]):
    def __init__(
        self,
        path: Path,
        live: Live,
        prepare: Callable[[Event], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.current = RuleSet()
        self.tests: list[CaseResult] = []  # the results of the tests of the set in force
        self.stats = RuleStats()  # kept across reloads
        super().__init__(
            "rules", stamp=partial(folder_stamps, path, path / "tests"),
            build=lambda: _build(path, live.current.settings.destinations, prepare),
            apply=self._use, clock=clock,
        )

    def _use(self, built: tuple[RuleSet, list[CaseResult]]) -> None:
        rule_set, self.tests = built
        self.current = rule_set
        if self.loaded_at is None:
            log.info("rules: %d loaded from %s (rule set %s)", len(rule_set.rules), self.path,
                     rule_set.hash)
        else:
            log.info("rules reloaded: %d rules (rule set %s)", len(rule_set.rules),
                     rule_set.hash)

    def in_force(self) -> str:
        return f"rule set {self.current.hash}"
