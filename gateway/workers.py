"""`tag-gateway serve --workers N`: N processes sharing the port and the outbox.

Each worker is `python -m gateway serve --worker I` on the same config: the kernel spreads
connections across them (SO_REUSEPORT), they share the SQLite outbox (WAL; each transaction
takes the write lock in turn), and only worker 0 runs the relay, so every destination has
exactly one relay. This supervisor forwards SIGTERM/SIGINT (graceful drain) and SIGHUP (reload)
to every worker, and restarts a worker that dies, after a pause, until it is told to stop.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

__all__ = ["die_with_supervisor", "supervise"]

log = logging.getLogger("gateway.workers")

SUPERVISOR_PID = "GATEWAY_SUPERVISOR_PID"  # how a worker knows its supervisor
RESTART_PAUSE_SECONDS = 1.0
POLL_SECONDS = 0.2


class _Supervisor:
    def __init__(self, config: Path, count: int, shutdown_timeout: float,
                 announce: str) -> None:
        self._config = config
        self._announce = announce
        self._count = count
        self._grace = shutdown_timeout + 5
        self._stopping = False
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._died_at: dict[int, float] = {}

    def _start(self, index: int) -> None:
        self._procs[index] = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(self._config),
             "--worker", str(index)],
            env={**os.environ, SUPERVISOR_PID: str(os.getpid())},
        )

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stopping = True
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._forward)
        for index in range(self._count):
            self._start(index)
        log.info("serving with %d workers (worker 0 relays)", self._count)
        if self._announce:
            print(self._announce, flush=True)
        while not self._stopping:
            time.sleep(POLL_SECONDS)
            self._restart_the_dead()
        return self._drain()

    def _restart_the_dead(self) -> None:
        now = time.monotonic()
        for index, proc in list(self._procs.items()):
            if proc.poll() is None or self._stopping:
                continue
            died = self._died_at.setdefault(index, now)
            if died == now:
                log.error("worker %d exited with %s; restarting it", index, proc.returncode)
            if now - died >= RESTART_PAUSE_SECONDS:
                del self._died_at[index]
                self._start(index)

    def _drain(self) -> int:
        deadline = time.monotonic() + self._grace
        for proc in self._procs.values():
            remaining = max(0.0, deadline - time.monotonic())
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
        return 0 if all(p.returncode == 0 for p in self._procs.values()) else 1


def supervise(config: Path, count: int, shutdown_timeout: float, announce: str = "") -> int:
    """Run `count` workers until SIGTERM/SIGINT; the exit code says whether all drained.

    `announce`: printed once, after the workers start (the base code to paste)."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return _Supervisor(config, count, shutdown_timeout, announce).run()


def die_with_supervisor() -> None:
    """In a worker: get SIGTERM (a graceful drain) when the supervisor dies, even by kill -9,
    rather than serve on beside a new supervisor with an old config (Linux's
    PR_SET_PDEATHSIG). A worker whose supervisor is already gone stops now."""
    supervisor = os.environ.get(SUPERVISOR_PID)
    if supervisor is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError) as exc:
        log.warning("this worker cannot follow its supervisor's death (%s)", exc)
    if str(os.getppid()) != supervisor:  # it died before prctl took effect
        sys.exit(0)


PR_SET_PDEATHSIG = 1
