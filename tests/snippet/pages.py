"""Browser-side helpers: open a shop page and read what its script handed to sendBeacon.

These are coroutines for the browser's loop: tests run them with `await chromium.run(...)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from playwright.async_api import BrowserContext, Page, Response

# Installed before any page script: records every sendBeacon call (synchronously, so a test can
# prove that nothing was handed to the network), then lets it through.
BEACON_SPY = """
window.__beacons = [];
const realBeacon = navigator.sendBeacon.bind(navigator);
navigator.sendBeacon = (url, body) => {
  window.__beacons.push([String(url), String(body)]);
  return realBeacon(url, body);
};
"""
LOADED = "!!(window.fbq && window.fbq.callMethod)"


async def open_page(context: BrowserContext, url: str, *, spy: bool = True) -> Page:
    """Open `url` and wait until gw.js has loaded and replayed the base code's queue."""
    page = await context.new_page()
    if spy:
        await page.add_init_script(BEACON_SPY)
    await page.goto(url)
    await page.wait_for_function(LOADED, polling=20)
    return page


def is_hit(response: Response) -> bool:
    return urlsplit(response.url).path.endswith("/tr")


async def open_page_awaiting_hit(context: BrowserContext, url: str) -> tuple[Page, Response]:
    """Open `url` and wait for the answer to its first hit (the base code's PageView)."""
    page = await context.new_page()
    await page.add_init_script(BEACON_SPY)
    async with page.expect_response(is_hit) as first:
        await page.goto(url)
    return page, await first.value


async def beacons(page: Page) -> list[tuple[str, dict[str, str]]]:
    """(URL, parameters) of every sendBeacon call the page made so far, in order."""
    calls: list[list[str]] = await page.evaluate("window.__beacons")
    return [(url, dict(parse_qsl(body))) for url, body in calls]


async def cookies_by_name(context: BrowserContext) -> dict[str, dict[str, Any]]:
    return {cookie["name"]: dict(cookie) for cookie in await context.cookies()}


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a cheap condition on the browser's loop (bounded): for Playwright's own events."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def wait_for_cookies(context: BrowserContext, *names: str,
                           timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """The context's cookies once all `names` are set (the hit's answer may still be in flight)."""
    async with asyncio.timeout(timeout):
        while True:
            cookies = await cookies_by_name(context)
            if all(name in cookies for name in names):
                return cookies
            await asyncio.sleep(0.02)
