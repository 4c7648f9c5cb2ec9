"""A destination-wide circuit breaker: during an outage the destination waits as a whole.

Each batch has its own backoff, but when a platform is down every batch fails: without a
circuit the relay kept sending (tens of requests a second, a warning each) and, once the
platform came back, every row still waited out its own backoff. So after `THRESHOLD` transient
failures in a row (network, timeout, 5xx) the circuit opens: the worker sends one small probe
at a time, at most one a second, waiting longer after each failed probe (exponential with
jitter, capped at `PROBE_MAX_SECONDS` so that a recovery is noticed within seconds). Any answer
from the platform that is not a transient failure (success, a refused event, a refused token)
closes it; the worker then makes the rows that failed meanwhile due at once.

Rate limits neither open nor close it: the platform is up and holds the destination back by
itself (`RateLimited`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["PROBE_BATCH_SIZE", "PROBE_MAX_SECONDS", "PROBE_MIN_SECONDS", "THRESHOLD", "Circuit",
           "Outage"]

THRESHOLD = 5  # transient failures in a row that open the circuit
PROBE_MIN_SECONDS = 1.0  # never more than one probe a second
PROBE_MAX_SECONDS = 5.0  # the longest wait between probes: a recovery is seen within it
PROBE_BATCH_SIZE = 1  # events a probe carries


class Outage(NamedTuple):
    """What a closing circuit reports: how long it was open and the requests sent meanwhile."""

    seconds: float
    requests: int


class Circuit:
    """One destination's circuit: closed (requests flow) or open (one probe at a time)."""

    def __init__(self, clock: Callable[[], float], rng: Callable[[], float]) -> None:
        self._clock = clock
        self._rng = rng
        self.failures = 0  # transient failures in a row
        self.opened_at: float | None = None
        self.requests = 0  # requests that failed while open
        self.probe_at = 0.0  # when the next probe may go (open only)

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def wait(self) -> float:
        """Seconds before the next request may go (0 when closed or a probe is due)."""
        return max(0.0, self.probe_at - self._clock()) if self.is_open else 0.0

    def failed(self) -> bool:
        """A request failed transiently; True when this failure opened the circuit."""
        self.failures += 1
        if self.is_open:
            self.requests += 1
            self._schedule()
            return False
        if self.failures < THRESHOLD:
            return False
        self.opened_at, self.requests = self._clock(), 0
        self._schedule()
        return True

    def answered(self) -> Outage | None:
        """The platform answered (not a transient failure); the outage it ends, if any."""
        self.failures = 0
        if self.opened_at is None:
            return None
        outage = Outage(self._clock() - self.opened_at, self.requests + 1)
        self.opened_at = None
        return outage

    def status(self) -> dict[str, object]:
        """For /status."""
        if self.opened_at is None:
            return {"state": "closed", "transient_failures_in_a_row": self.failures}
        now = self._clock()
        return {"state": "open", "open_for_seconds": round(now - self.opened_at, 3),
                "requests_while_open": self.requests,
                "next_probe_in_seconds": round(max(0.0, self.probe_at - now), 3)}

    def _schedule(self) -> None:
        # The ceiling doubles with each failed probe (from 1 s to PROBE_MAX_SECONDS); the wait is
        # drawn between the floor and it, so that processes probing one platform drift apart.
        ceiling = min(PROBE_MAX_SECONDS, PROBE_MIN_SECONDS * 2.0 ** min(self.requests, 16))
        self.probe_at = self._clock() + PROBE_MIN_SECONDS + self._rng() * (
            ceiling - PROBE_MIN_SECONDS)
