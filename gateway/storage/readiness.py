"""Readiness for any storage engine: a real write, one at a time, shared by whoever asks
meanwhile (readiness is polled every few seconds, often by several probes at once: a burst of
checks is one write). An empty transaction would commit even on a full disk, so the engine's
`write` must change a row."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["SharedProbe"]


class SharedProbe:
    def __init__(self, write: Callable[[], Awaitable[None]],
                 describe: Callable[[BaseException], str] = str) -> None:
        """`describe`: a failed write's reason for people (free of secrets)."""
        self._write = write
        self._describe = describe
        self._running: asyncio.Future[str | None] | None = None

    async def problem(self) -> str | None:
        """None when the write committed, else why not."""
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())
            self._running.add_done_callback(self._done)
        return await asyncio.shield(self._running)

    def _done(self, _running: asyncio.Future[str | None]) -> None:
        self._running = None

    async def _run(self) -> str | None:
        try:
            await self._write()
        except Exception as exc:  # answered, not logged: polled every few seconds
            return self._describe(exc)
        return None
