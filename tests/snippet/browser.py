"""Debian's Chromium driven by Playwright on a thread of its own, shared by a module's tests.

Each test runs in its own event loop (pytest-asyncio's function scope, where the gateway and
the fake Graph live), while one browser per module keeps the suite fast. So the browser gets a
dedicated thread and loop: tests hand it coroutines with `await chromium.run(coro)`, and their
own loop keeps serving the gateway while the browser works.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# A desktop Chrome user agent: Chromium's "HeadlessChrome" is (rightly) a bot to the gateway.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
CALL_TIMEOUT = 30.0

T = TypeVar("T")


class BrowserThread:
    """One Chromium process; `run` executes Playwright coroutines on the browser's loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chromium",
                                        daemon=True)
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def start(self) -> None:
        if not CHROMIUM.exists():
            raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
        self._thread.start()
        self.call(self._launch())

    def stop(self) -> None:
        try:
            self.call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT)
            self._loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the browser's loop from synchronous code (fixture set-up and teardown)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the browser's loop from a test's loop, bounded."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), CALL_TIMEOUT)

    async def new_context(self, width: int = 1024, height: int = 640) -> BrowserContext:
        """A fresh profile (no cookies), to be called through `run`."""
        assert self._browser is not None
        return await self._browser.new_context(
            user_agent=USER_AGENT, viewport={"width": width, "height": height}
        )

    async def _launch(self) -> None:
        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )

    async def _close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
