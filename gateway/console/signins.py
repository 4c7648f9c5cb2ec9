"""Failed sign-ins: throttled per client IP as the server ingress throttles wrong access keys
(the same FailureThrottle), and logged at most once every `LOG_EVERY_SECONDS` with a count, so
someone guessing keys can neither try fast nor flood the log. Nothing typed is ever logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..accesskeys import FailureThrottle

__all__ = ["LOG_EVERY_SECONDS", "SignIns"]

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0


class SignIns:
    def __init__(self, clock: Callable[[], float], *,
                 log_every: float = LOG_EVERY_SECONDS) -> None:
        # Not trusted after a success (trusted=0): unlike backends behind a NAT, a person who
        # signed in needs no pass for the wrong keys that come after from the same address.
        self.throttle = FailureThrottle(clock, trusted=0.0)
        self._log_every = log_every
        self._wrong = 0  # since the last line
        self._throttled = 0
        self._clients: set[str] = set()
        self._window: asyncio.TimerHandle | None = None

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again after too many failures, or None."""
        wait = self.throttle.retry_after(client)
        if wait is not None:
            self._note(client, throttled=True)
        return wait

    def failed(self, client: str) -> None:
        """A sign-in with a wrong key."""
        self.throttle.record_failure(client)
        self._note(client, throttled=False)

    def succeeded(self, client: str) -> None:
        self.throttle.forgive(client)

    def close(self) -> None:
        """Say what is still uncounted (at shutdown)."""
        if self._window is not None:
            self._window.cancel()
        self._flush()
        self._window = None

    def _note(self, client: str, *, throttled: bool) -> None:
        if self._window is None:  # the first of a while: told at once
            if throttled:
                log.warning("console: a sign-in from %s was refused: too many wrong admin keys "
                            "from there recently", client)
            else:
                log.warning("console: a sign-in with a wrong admin key was refused (from %s)",
                            client)
            self._window = asyncio.get_running_loop().call_later(self._log_every, self._tick)
            return
        if throttled:
            self._throttled += 1
        else:
            self._wrong += 1
        self._clients.add(client)

    def _tick(self) -> None:
        """A window ended: one line for the refusals it saw; the next window starts only if
        there were any (so a lone failure after a quiet while is told at once again)."""
        self._window = None
        if self._flush():
            self._window = asyncio.get_running_loop().call_later(self._log_every, self._tick)

    def _flush(self) -> bool:
        if not self._wrong and not self._throttled:
            return False
        log.warning("console: %d more sign-ins refused (%d with a wrong admin key, %d throttled) "
                    "from %d addresses; told at most once every %d s", self._wrong
                    + self._throttled, self._wrong, self._throttled, len(self._clients),
                    round(self._log_every))
        self._wrong = self._throttled = 0
        self._clients.clear()
        return True
