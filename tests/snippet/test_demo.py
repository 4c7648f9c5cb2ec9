"""The demo page (`server.demo`): on by default only on loopback, served from the gateway's own
origin; its buttons store events, and its status answer speaks only of demo events."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.config import parse_settings
from gateway.errors import ConfigError
from gateway.settings import ServerSettings, Settings

from ..conftest import PIXEL_A, GatewayFactory, stored_rows, wait_until
from .browser import BrowserThread
from .conftest import PREFIX, Site
from .pages import open_page


async def test_a_click_on_the_demo_page_stores_the_event_and_says_so(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = str(site.gateway.make_url(f"{PREFIX}/demo"))

    async def click() -> str:
        page = await open_page(context, url)
        await page.click("button[data-event=Purchase]")
        await page.wait_for_selector("#log li.ok", timeout=10_000)
        return await page.inner_text("#log li")

    said = await chromium.run(click())

    def purchase_stored() -> bool:
        return any(row.event_name == "Purchase" for row in stored_rows(site.settings))

    await wait_until(purchase_stored)
    [row] = [row for row in stored_rows(site.settings) if row.event_name == "Purchase"]
    assert row.pixel_id == PIXEL_A and row.event_id.startswith("demo-")
    assert row.event_id in said and "stored" in said
    assert row.payload is not None
    assert json.loads(row.payload)["custom_data"] == {
        "value": 42.5, "currency": "EUR", "content_ids": ["demo-sku"], "num_items": 1}


async def test_the_status_answer_knows_only_demo_events(
    start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    client = await start_gateway(one_destination)
    demo_id = "demo-" + "0a" * 16
    for event_id in (demo_id, "order-1001"):
        hit = await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead", "eid": event_id,
                                              "dl": "https://shop.example.com/"})
        assert hit.status == 200
    answer = await client.get("/demo/landed", params={"eid": demo_id})
    assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
    assert (await answer.json())["states"] in (["pending"], ["inflight"], ["delivered"])
    missing = await client.get("/demo/landed", params={"eid": "demo-" + "0b" * 16})
    assert await missing.json() == {"states": [], "reasons": []}
    for other in ("order-1001", "demo-1", ""):  # a real order's id is never looked up
        refused = await client.get("/demo/landed", params={"eid": other})
        assert refused.status == 400
        assert "demo event id" in (await refused.json())["error"]


async def test_the_root_leads_to_the_demo_page(
    start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    client = await start_gateway(one_destination)
    root = await client.get("/", allow_redirects=False)
    assert root.status == 302 and root.headers["Location"] == "/demo"
    page = await client.get("/demo")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert "(window,document,'/gw.js');" in html and f"fbq('init', '{PIXEL_A}');" in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


async def _paths(client: TestClient[Any, Any]) -> list[int]:
    return [(await client.get(path, allow_redirects=False)).status
            for path in ("/", "/demo", f"/demo/landed?eid=demo-{'0' * 32}")]


@pytest.mark.parametrize(("host", "demo"), [("0.0.0.0", None), ("127.0.0.1", False)])
async def test_off_the_demo_paths_are_404(
    start_gateway: GatewayFactory, one_destination: Settings, host: str, demo: bool | None
) -> None:
    server = replace(one_destination.server, host=host, demo=demo)
    client = await start_gateway(replace(one_destination, server=server))
    assert await _paths(client) == [404, 404, 404]
    assert (await client.get("/gw.js")).status == 200  # the rest is served as before


@pytest.mark.parametrize(("host", "demo", "serves"), [
    ("127.0.0.1", None, True), ("127.0.0.53", None, True), ("localhost", None, True),
    ("::1", None, True), ("[::1]", None, True), ("0.0.0.0", None, False), ("::", None, False),
    ("10.1.2.3", None, False), ("gateway.internal", None, False), ("0.0.0.0", True, True),
    ("127.0.0.1", False, False),
])
def test_demo_defaults_to_on_for_loopback_only(host: str, demo: bool | None,
                                               serves: bool) -> None:
    assert ServerSettings(host=host, demo=demo).serves_demo is serves


GOOD = 'version: 1\nserver: {host: 0.0.0.0, demo: DEMO}\ndestinations: [{name: a}]\n'


@pytest.mark.parametrize(("written", "demo"), [
    ("true", True), ("false", False), ("auto", None), ("null", None), ('"${X:-}"', None)])
def test_server_demo_is_true_false_or_auto(written: str, demo: bool | None) -> None:
    assert parse_settings(GOOD.replace("DEMO", written), env={}).server.demo is demo


def test_a_bad_server_demo_is_a_located_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(GOOD.replace("DEMO", "sometimes"), filename="config.yaml", env={})
    assert [str(p) for p in caught.value.problems] == [
        "config.yaml:2:31: server.demo: must be true or false, got 'sometimes'"]


def test_demo_is_off_by_default_behind_a_trusted_proxy() -> None:
    """nginx on the same host forwarding to a loopback gateway would make it public."""
    behind = ServerSettings(host="127.0.0.1", trusted_proxies=("127.0.0.0/8",))
    assert not behind.serves_demo
    assert ServerSettings(host="127.0.0.1", trusted_proxies=("127.0.0.0/8",),
                          demo=True).serves_demo
