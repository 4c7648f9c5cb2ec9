"""The console page in Debian's Chromium: sign in, watch a hit arrive live, replay a dead letter,
a cross-site form refused for want of the CSRF token, an ended session, and the page at 375 px
by keyboard.

`UPDATE_CONSOLE_SCREENSHOT=1` writes the live page's screenshot to docs/console.png and the
overview's to docs/console-overview.png (otherwise to the test's temporary folder)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import BrowserContext, Page

from gateway import appkeys
from gateway.app import create_app
from gateway.console.sessions import IDLE_SECONDS
from gateway.settings import Settings

from ..conftest import PIXEL_A, FakeClock, outbox_rows, wait_until
from ..fake_graph import FakeGraph
from ..snippet.browser import BrowserThread
from .conftest import ADMIN_KEY, console_settings

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console.png"
OVERVIEW = SCREENSHOT.with_name("console-overview.png")


@dataclass
class Gateway:
    server: TestServer
    settings: Settings
    graph: FakeGraph

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def hit(self, event_id: str, event: str = "Lead") -> None:
        async with aiohttp.ClientSession() as session, session.get(self.url("/tr"), params={
                "id": PIXEL_A, "ev": event, "eid": event_id,
                "dl": "https://shop.example.com/p", "ud[em]": "visitor@example.com"}) as answer:
            assert answer.status == 200


@pytest.fixture
async def gateway(tmp_path: Path, fake_graph: FakeGraph, aiohttp_server: Any) -> Gateway:
    settings = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    return Gateway(await aiohttp_server(create_app(settings)), settings, fake_graph)


async def signed_in(context: BrowserContext, gateway: Gateway) -> Page:
    """The console page, signed in through its form."""
    page = await context.new_page()
    await page.goto(gateway.url("/admin/"))
    await page.fill("#key", ADMIN_KEY)
    await page.click("#sign-in button[type=submit]")
    await page.wait_for_selector("#destinations tbody tr")
    return page


async def test_sign_in_and_watch_a_hit_arrive_live(
    chromium: BrowserThread, context: BrowserContext, gateway: Gateway, tmp_path: Path
) -> None:
    async def wrong_key() -> str:
        page = await context.new_page()
        await page.goto(gateway.url("/admin/"))
        await page.fill("#key", "not-the-key")
        await page.click("#sign-in button[type=submit]")
        await page.wait_for_selector("#sign-in-failed", state="visible")
        assert await page.is_hidden("#console")
        text = await page.inner_text("#sign-in-failed")
        await page.close()
        return text

    assert "not the admin key" in await chromium.run(wrong_key())

    async def watch() -> Page:
        page = await signed_in(context, gateway)
        assert await page.inner_text("#destinations tbody") != ""
        await page.click("nav a[data-page=live]")
        await page.wait_for_selector("#live-state:has-text('Connected')")
        return page

    page = await chromium.run(watch())
    await gateway.hit("live-page-1")
    sent = time.monotonic()
    await chromium.run(page.wait_for_selector("#events li:has-text('live-page-1')",
                                              timeout=1000))
    assert time.monotonic() - sent < 1.0
    line = await chromium.run(page.inner_text("#events li[data-kind=incoming]"))
    assert "browser hit" in line and "Lead" in line and "routed" in line and "main" in line
    assert "visitor@example.com" not in line and "TEST-TOKEN" not in line
    await chromium.run(page.wait_for_selector("#events li[data-outcome=delivered]"))

    # Pause holds new events back; resume shows them.
    await chromium.run(page.click("#live-pause"))
    await gateway.hit("live-page-2", "AddToCart")
    await chromium.run(page.wait_for_selector("#live-state:has-text(' new')"))
    assert await chromium.run(page.locator("#events li:has-text('live-page-2')").count()) == 0
    await chromium.run(page.click("#live-pause"))
    await chromium.run(page.wait_for_selector("#events li:has-text('live-page-2')"))
    # The outcome filter keeps only deliveries.
    await chromium.run(page.select_option("#live-outcome", "delivered"))
    kinds = await chromium.run(page.eval_on_selector_all(
        "#events li", "items => items.map(li => li.dataset.outcome)"))
    assert kinds and set(kinds) == {"delivered"}
    await chromium.run(page.select_option("#live-outcome", ""))
    shot = SCREENSHOT if os.environ.get("UPDATE_CONSOLE_SCREENSHOT") else tmp_path / "c.png"
    await chromium.run(page.screenshot(path=str(shot), full_page=True))
    assert shot.stat().st_size > 0


async def test_the_overview_charts_received_and_delivered_per_minute_at_375_px(
    chromium: BrowserThread, context: BrowserContext, gateway: Gateway, tmp_path: Path
) -> None:
    for n in range(3):
        await gateway.hit(f"chart-{n}")
    metrics = gateway.server.app[appkeys.METRICS]
    await wait_until(lambda: metrics.delivered_total() == 3)

    async def look() -> dict[str, Any]:
        context = await chromium.new_context(width=375, height=740)
        try:
            page = await signed_in(context, gateway)
            await page.wait_for_selector(
                "#traffic-chart svg[aria-label*='3 received, 3 delivered']")
            await page.click("#traffic summary")  # the table, the chart's text alternative
            return await page.evaluate(CHART)  # type: ignore[no-any-return]
        finally:
            await context.close()

    chart = await chromium.run(look())
    shot = OVERVIEW if os.environ.get("UPDATE_CONSOLE_SCREENSHOT") else tmp_path / "o.png"
    await chromium.run(overview_screenshot(context, gateway, shot))
    assert chart["role"] == "img" and "over the last hour" in chart["label"]
    # One line each, a point per minute, drawn within the 375 px page.
    assert chart["lines"] == [["received", 60], ["delivered", 60]]
    assert 0 < chart["width"] and chart["right"] <= 375 and chart["page_width"] <= 375
    assert sum(int(cells[1]) for cells in chart["rows"]) == 3
    assert sum(int(cells[2]) for cells in chart["rows"]) == 3
    assert "3 received, 3 delivered, from 1 process" in chart["caption"]
    assert chart["processes"] == 1


async def overview_screenshot(context: BrowserContext, gateway: Gateway, path: Path) -> None:
    page = await signed_in(context, gateway)
    await page.wait_for_selector("#traffic-chart svg")
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


CHART = """() => {
    const svg = document.querySelector('#traffic-chart svg');
    const box = svg.getBoundingClientRect();
    return {
        role: svg.getAttribute('role'), label: svg.getAttribute('aria-label'),
        lines: Array.from(svg.querySelectorAll('polyline')).map(
            line => [line.getAttribute('class'), line.getAttribute('points').split(' ').length]),
        width: box.width, right: box.right,
        page_width: document.documentElement.scrollWidth,
        rows: Array.from(document.querySelectorAll('#traffic-table tbody tr')).map(
            tr => Array.from(tr.cells).map(td => td.textContent)),
        caption: document.querySelector('#traffic figcaption').textContent,
        processes: document.querySelectorAll('#processes tbody tr').length,
    };
}"""


async def test_an_ended_session_brings_the_sign_in_form_back(
    chromium: BrowserThread, context: BrowserContext, tmp_path: Path, fake_graph: FakeGraph,
    aiohttp_server: Any,
) -> None:
    clock = FakeClock(time.time())  # moved past the idle end below; otherwise wall time
    settings = console_settings(tmp_path, fake_graph.url)  # type: ignore[attr-defined]
    gateway = Gateway(await aiohttp_server(create_app(settings, clock=clock)), settings,
                      fake_graph)
    page = await chromium.run(signed_in(context, gateway))

    clock.now += IDLE_SECONDS + 1  # an hour without a request

    async def noticed() -> str:
        # The open page's next refresh (every 5 s) is refused and brings the form back.
        await page.wait_for_selector("#signed-out", state="visible", timeout=15_000)
        assert await page.is_hidden("#console")
        return await page.inner_text("#signed-out")

    assert "sign in again" in await chromium.run(noticed())
    # Signing in again works, and opens a new session.
    page = await chromium.run(signed_in(context, gateway))
    assert await chromium.run(page.is_visible("#console"))


async def test_replay_a_dead_letter_from_the_page(
    chromium: BrowserThread, context: BrowserContext, gateway: Gateway
) -> None:
    for event_id in ("dead-1", "dead-2"):  # one at a time: each its own dead letter
        gateway.graph.fail_with(400, 100, "Invalid parameter", error_user_msg="Bad value")
        await gateway.hit(event_id)
        await wait_until(lambda: all(r["state"] == "dead" for r in outbox_rows(gateway.settings)))
    await wait_until(lambda: len(outbox_rows(gateway.settings)) == 2)
    [row] = [r for r in outbox_rows(gateway.settings) if r["event_id"] == "dead-1"]

    async def replay() -> str:
        page = await signed_in(context, gateway)
        await page.click("nav a[data-page=dead-letters]")
        await page.wait_for_selector("#dead tbody tr:has-text('Bad value')")
        await page.click(f"button[aria-label='Replay dead letter {row['id']}']")
        await page.wait_for_selector("#dead-state:has-text('Replayed 1')")
        return await page.inner_text("#dead-state")

    assert "queued again" in await chromium.run(replay())
    await gateway.graph.wait_for_events(1)
    assert [e["event_id"] for e in gateway.graph.events] == ["dead-1"]
    states = {r["event_id"]: r["state"] for r in outbox_rows(gateway.settings)}
    assert states == {"dead-1": "delivered", "dead-2": "dead"}  # only the one replayed


async def test_a_cross_site_form_cannot_replay_without_the_csrf_token(
    chromium: BrowserThread, context: BrowserContext, gateway: Gateway, aiohttp_server: Any
) -> None:
    gateway.graph.fail_with(400, 100, "Invalid parameter")
    await gateway.hit("dead-2")
    await wait_until(lambda: [r["state"] for r in outbox_rows(gateway.settings)] == ["dead"])
    target = gateway.url("/admin/api/dead-letters/replay")
    evil = web.Application()

    async def form(_request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=(
            f"<form id=f method=post action='{target}'></form>"
            "<script>document.getElementById('f').submit()</script>"))

    evil.router.add_get("/", form)
    other = await aiohttp_server(evil)  # another origin (same host, another port)

    async def attack() -> tuple[str, int]:
        page = await signed_in(context, gateway)
        # From the console's own page too: a write without the header is refused.
        status = await page.evaluate(
            "fetch('api/dead-letters/replay', {method: 'POST'}).then(r => r.status)")
        attacker = await context.new_page()
        await attacker.goto(str(other.make_url("/")))
        await attacker.wait_for_url(target)
        return await attacker.inner_text("body"), status

    body, status = await chromium.run(attack())
    assert status == 403
    assert "X-CSRF-Token" in body
    assert [r["state"] for r in outbox_rows(gateway.settings)] == ["dead"]


# The visible controls without an accessible name (a label, aria-label or text).
UNLABELLED = """() => Array.from(document.querySelectorAll('input, select, button, textarea'))
    .filter(e => e.offsetParent !== null)
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.textContent.trim())
    .map(e => 'unlabelled ' + e.outerHTML)"""


async def test_at_375_px_by_keyboard_with_every_control_labelled(
    chromium: BrowserThread, gateway: Gateway
) -> None:
    async def narrow() -> list[str]:
        context = await chromium.new_context(width=375, height=740)
        try:
            page = await context.new_page()
            await page.goto(gateway.url("/admin/"))
            await page.wait_for_selector("#key:focus")  # focused, ready to type
            problems = await page.evaluate(UNLABELLED)
            await page.keyboard.type(ADMIN_KEY)
            await page.keyboard.press("Enter")
            await page.wait_for_selector("#destinations tbody tr")
            for name in ("overview", "live", "manage", "dead-letters", "rules"):
                await page.focus(f"nav a[data-page={name}]")
                await page.keyboard.press("Enter")
                await page.wait_for_selector(f"#{name}:not([hidden])")
                width = await page.evaluate("document.documentElement.scrollWidth")
                if width > 375:
                    problems.append(f"{name}: {width} px wide")
                problems += await page.evaluate(UNLABELLED)
            return problems
        finally:
            await context.close()

    assert await chromium.run(narrow()) == []


async def send_event(gateway: Gateway, key: str) -> int:
    """The server ingress's answer to one event sent with `key`."""
    event = {"event_name": "Lead", "event_time": int(time.time()) - 60, "event_id": "k-1",
             "action_source": "website", "event_source_url": "https://shop.example.com/p",
             "user_data": {"em": "buyer@example.com", "client_ip_address": "203.0.113.9",
                           "client_user_agent": "Mozilla/5.0"}}
    async with aiohttp.ClientSession() as session, session.post(
            gateway.url(f"/capi/{PIXEL_A}/events"),
            data=orjson.dumps({"data": [event], "accessKey": key})) as answer:
        return answer.status


async def test_make_an_access_key_shown_once_and_revoke_it_from_the_page(
    chromium: BrowserThread, gateway: Gateway
) -> None:
    async def make() -> tuple[Page, BrowserContext, str, list[str]]:
        context = await chromium.new_context(width=375, height=740)
        page = await signed_in(context, gateway)
        await page.focus("nav a[data-page=access-keys]")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#keys-state:has-text('0 access keys')")
        problems = await page.evaluate(UNLABELLED)
        await page.fill("#key-name", "page-backend")
        await page.fill("#key-pixels", PIXEL_A)
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#key-made:not([hidden])")
        assert await page.evaluate("document.activeElement.id") == "key-made-value"
        assert "shown only this once" in await page.inner_text("#key-made")
        key = await page.input_value("#key-made-value")
        await page.wait_for_selector("#keys tbody tr:has-text('page-backend')")
        row = await page.inner_text("#keys tbody tr")
        assert "console" in row and PIXEL_A in row and key not in row
        problems += await page.evaluate(UNLABELLED)
        width = await page.evaluate("document.documentElement.scrollWidth")
        if width > 375:
            problems.append(f"access keys: {width} px wide")
        await page.click("#key-copy")
        await page.wait_for_selector("#key-copied:has-text('Copied')")
        await page.click("#key-done")
        assert key not in await page.content()  # gone from the page once stored
        return page, context, key, problems

    page, context, key, problems = await chromium.run(make())
    assert problems == []
    assert len(key) >= 43 and await send_event(gateway, key) == 202

    async def revoke() -> str:
        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("button[aria-label='Revoke access key page-backend']")
        await page.wait_for_selector("#keys-state:has-text('Revoked page-backend')")
        text = await page.inner_text("#keys")
        await context.close()
        return text

    assert "page-backend" not in await chromium.run(revoke())
    assert await send_event(gateway, key) == 401
