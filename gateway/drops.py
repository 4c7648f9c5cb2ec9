"""Events the rules drop: nothing of them is stored or sent, yet a person can tell.

The sender gets its usual 2xx (a pixel is never told). Each drop is counted in the outbox, per
hour, rule, source and event name (`tag-gateway outbox` shows the counts, `--follow` as they
come), and told in the log at INFO: at most one line per rule per `LOG_INTERVAL` seconds, with
how many it dropped since its last line. A line names the rule, the event's name and its source
(browser or server), never a value of the event or anything about the visitor.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from .storage import Outbox

__all__ = ["LOG_INTERVAL", "DropReport"]

log = logging.getLogger(__name__)

LOG_INTERVAL = 60.0  # seconds between two lines about one rule


class DropReport:
    """Counts drops in the outbox (in memory until its next commit) and tells them in the log."""

    def __init__(self, outbox: Outbox, clock: Callable[[], float],
                 interval: float = LOG_INTERVAL) -> None:
        self._outbox = outbox
        self._clock = clock
        self._interval = interval
        self._told: dict[str, float] = {}  # rule -> when its last line was logged
        self._untold: Counter[str] = Counter()  # rule -> drops since that line

    def note(self, rule: str, source: str, event_name: str) -> None:
        """One event `rule` dropped."""
        self._outbox.count_drop(rule, source, event_name)
        now = self._clock()
        last = self._told.get(rule)
        if last is not None and now - last < self._interval:
            self._untold[rule] += 1
            return
        self._told[rule] = now
        dropped = self._untold.pop(rule, 0) + 1
        # %.100r: a name that came from a sender is quoted (no line breaks) and bounded.
        if last is None:
            log.info("rule %r dropped event %.100r (%s): nothing is stored or sent; "
                     "`tag-gateway outbox` counts drops per rule; at most one line per rule "
                     "every %gs", rule, event_name, source, self._interval)
        else:
            log.info("rule %r dropped %d event%s in the last %.0fs, the latest %.100r (%s)",
                     rule, dropped, "" if dropped == 1 else "s", now - last, event_name, source)
