"""The Destinations page in Debian's Chromium: add a destination, set its token in a password
field, see the token check's verdict, send a test event, delete it; the token then appears in
no HTML, API answer, log line, /status, nor the store's plaintext."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from playwright.async_api import BrowserContext, Dialog, Page

from gateway.app import create_app
from gateway.secretbox import KEY_ENV, new_key

from ..conftest import PIXEL_B
from ..fake_graph import FakeGraph
from ..snippet.browser import BrowserThread
from .conftest import ADMIN_KEY, BEARER, console_settings
from .test_destinations import gateway_log

TOKEN = "EAAPageTypedToken9876543210"
# Everything the API answers, read by the signed-in page itself.
API_PATHS = ("session", "destinations", "destination-types", "status", "rules",
             "dead-letters")


async def test_add_a_destination_and_set_its_token_in_the_page_and_find_it_nowhere(
    chromium: BrowserThread, context: BrowserContext, tmp_path: Path, fake_graph: FakeGraph,
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, new_key())
    fake_graph.valid_tokens = {TOKEN}
    graph_url = fake_graph.url  # type: ignore[attr-defined]
    settings = console_settings(tmp_path, graph_url)
    server = await aiohttp_server(create_app(settings))
    base = str(server.make_url("/admin/"))

    async def use_the_page() -> tuple[Page, dict[str, str], str]:
        page = await context.new_page()
        await page.goto(base)
        await page.fill("#key", ADMIN_KEY)
        await page.click("#sign-in button[type=submit]")
        await page.wait_for_selector("#destinations tbody tr")
        await page.click("nav a[data-page=manage]")
        await page.wait_for_selector(
            "#manage-list li[data-destination=main]:has-text('config.yaml')")
        # Config destinations are read-only: no token field, no delete.
        main = page.locator("#manage-list li[data-destination=main]")
        assert await main.locator("input, button:has-text('Delete')").count() == 0

        await page.select_option("#add-type", "meta_capi")
        assert await page.inner_text("#add-account-label") == "Pixel or account id (pixel_id)"
        await page.fill("#add-name", "shop")
        await page.fill("#add-account", PIXEL_B)
        await page.fill("#add-options", orjson.dumps(
            {"graph_url": graph_url, "test_event_code": "TEST777"}).decode())
        await page.click("#add-destination button[type=submit]")
        await page.wait_for_selector("#add-state:has-text('Added shop')")
        shop = page.locator("#manage-list li[data-destination=shop]")
        await shop.locator("text=no token").wait_for()

        # The token by keyboard into a password field, never filled in by the page.
        field = shop.get_by_label("Set the access token of shop")
        assert await field.get_attribute("type") == "password"
        await field.focus()
        await page.keyboard.type(TOKEN)
        await page.keyboard.press("Enter")
        shop = page.locator("#manage-list li[data-destination=shop]")
        await shop.locator("text=Token check").wait_for()
        check = await shop.inner_text()
        assert "token set" in check and "works: the token reads pixel" in check
        assert await shop.get_by_label("Replace the access token of shop").input_value() == ""

        await shop.get_by_role("button", name="Send a test event to shop").click()
        await shop.locator("text=Test event accepted").wait_for()

        html = await page.content()
        values = " ".join(await page.eval_on_selector_all(
            "input, textarea", "fields => fields.map(f => f.value)"))
        answers = {path: await page.evaluate(
            "path => fetch('api/' + path).then(r => r.text())", path) for path in API_PATHS}

        # Deleted after a confirmation.
        async def accept(dialog: Dialog) -> None:
            await dialog.accept()

        page.once("dialog", accept)
        await shop.get_by_role("button", name="Delete destination shop").click()
        await page.wait_for_selector("#manage-list li[data-destination=shop]", state="detached")
        return page, answers, html + values

    page, answers, html = await chromium.run(use_the_page())
    assert TOKEN not in html
    for path, text in answers.items():
        assert TOKEN not in text and len(text) > 2, path
    assert '"source":"console"' in answers["destinations"].replace(" ", "")
    [test_request] = fake_graph.requests
    assert test_request.body["test_event_code"] == "TEST777"
    assert test_request.query["access_token"] == TOKEN  # it did go to Meta, and only there

    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/status"), headers=BEARER) as answer:
            assert answer.status == 200 and TOKEN not in await answer.text()
    assert TOKEN not in gateway_log(caplog)
    await server.close()
    for path in tmp_path.glob("gateway.db*"):
        assert TOKEN.encode() not in path.read_bytes()
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        assert TOKEN not in "\n".join(db.iterdump())
    await chromium.run(page.close())
