"""The documented base code and gw.js in a real Chromium, on the gateway's own origin: what the
fake Graph receives, and the cookies the browser keeps."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from playwright.async_api import Request, Route

from ..conftest import PIXEL_A, PIXEL_B
from .browser import USER_AGENT, BrowserThread
from .conftest import PREFIX, Site, page_html
from .pages import (
    beacons,
    open_page,
    open_page_awaiting_hit,
    wait_for_cookies,
    wait_until,
)

SCRIPT = f"{PREFIX}/gw.js"
NINETY_DAYS = 90 * 24 * 3600
EVENT_ID = re.compile(r"[0-9a-f]{32}")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def without_time(event: dict[str, Any]) -> dict[str, Any]:
    """The event minus `event_time`, after checking it is the receive time."""
    event = dict(event)
    assert time.time() - 60 <= event.pop("event_time") <= time.time() + 1
    return event


def visitor(fbp: str, **extra: str) -> dict[str, str]:
    return {"client_ip_address": "127.0.0.1", "client_user_agent": USER_AGENT, "fbp": fbp,
            **extra}


BUY = (
    "<h1>Blue mug</h1><button id='buy' onclick=\"fbq('track', 'Purchase', {value: 42.5, "
    "currency: 'EUR', content_ids: ['sku-1', 'sku-2'], contents: [{id: 'sku-1', quantity: 2}], "
    "content_type: 'product', num_items: 2}, {eventID: 'order-1001'})\">Buy</button>"
)


async def test_base_code_sends_pageview_and_purchase_with_exact_fields(
    chromium: BrowserThread, context: Any, site: Site, tmp_path: Path
) -> None:
    url = site.page("product", page_html(SCRIPT, body=BUY))
    screenshot = tmp_path / "snippet-product-page.png"

    async def shop() -> None:
        page = await open_page(context, url)
        await page.click("#buy")
        await page.screenshot(path=str(screenshot))

    await chromium.run(shop())
    events = await site.graph.wait_for_events(2)
    fbp = (await chromium.run(wait_for_cookies(context, "_fbp")))["_fbp"]["value"]

    assert {request.pixel_id for request in site.graph.accepted} == {PIXEL_A}
    by_name = {event["event_name"]: without_time(event) for event in events}
    page_view = by_name["PageView"]
    assert EVENT_ID.fullmatch(page_view.pop("event_id"))
    assert page_view == {
        "event_name": "PageView", "action_source": "website", "event_source_url": url,
        "user_data": visitor(fbp),
    }
    assert by_name["Purchase"] == {
        "event_name": "Purchase", "event_id": "order-1001", "action_source": "website",
        "event_source_url": url, "user_data": visitor(fbp),
        "custom_data": {
            "value": 42.5, "currency": "EUR", "content_ids": ["sku-1", "sku-2"],
            "contents": [{"id": "sku-1", "quantity": 2}], "content_type": "product",
            "num_items": 2,
        },
    }
    assert screenshot.read_bytes().startswith(b"\x89PNG")  # kept as a test artifact


async def test_commands_queued_before_load_are_replayed_in_order(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("queued", page_html(SCRIPT, after=(
        "fbq('track', 'ViewContent', {content_ids: ['sku-1']});\n"
        "fbq('trackCustom', 'ScrolledHalf', {depth: 50});\n"
    )))
    requested: list[str] = []

    async def visit() -> list[tuple[str, dict[str, str]]]:
        context.on("request", lambda request: requested.append(request.url))
        return await beacons(await open_page(context, url))

    sent = await chromium.run(visit())
    assert [params["ev"] for _, params in sent] == ["PageView", "ViewContent", "ScrolledHalf"]
    for endpoint, params in sent:
        # The endpoint is the `tr` beside the script, under the gateway's prefix.
        assert endpoint == f"{site.origin}{PREFIX}/tr"
        assert params["id"] == PIXEL_A and params["dl"] == url and params["rqm"] == "SB"
        assert EVENT_ID.fullmatch(params["eid"])
        assert params["sw"].isdigit() and params["sh"].isdigit() and params["ts"].isdigit()
    assert len({params["eid"] for _, params in sent}) == 3

    events = await site.graph.wait_for_events(3)
    assert sorted(event["event_name"] for event in events) == [
        "PageView", "ScrolledHalf", "ViewContent"]
    assert {event["event_id"] for event in events} == {params["eid"] for _, params in sent}
    [scrolled] = [event for event in events if event["event_name"] == "ScrolledHalf"]
    assert scrolled["custom_data"] == {"depth": "50"}
    # Mirroring is off unless asked for: nothing went to Meta from the browser.
    assert not [u for u in requested if urlsplit(u).hostname == "www.facebook.com"]


async def test_fbclid_becomes_a_server_set_fbc_cookie_carried_by_the_events(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    fbclid = "AbC-123_xYz0IwAR3tKq"
    landing = site.page("landing", page_html(SCRIPT)) + f"?fbclid={fbclid}"
    following = site.page("next", page_html(SCRIPT))

    async def visit() -> tuple[str, dict[str, Any], dict[str, Any]]:
        page, answer = await open_page_awaiting_hit(context, landing)
        set_cookie = (await answer.all_headers()).get("set-cookie", "")
        first = await wait_for_cookies(context, "_fbp", "_fbc")
        await page.goto(following)  # no fbclid in the URL; the referrer still has the same one
        await page.wait_for_function("!!(window.fbq && window.fbq.callMethod)", polling=20)
        return set_cookie, first, await wait_for_cookies(context, "_fbp", "_fbc")

    set_cookie, first, later = await chromium.run(visit())
    fbc, fbp = first["_fbc"]["value"], first["_fbp"]["value"]
    assert re.fullmatch(rf"fb\.0\.\d{{13}}\.{fbclid}", fbc)  # the fbclid, unchanged
    assert re.fullmatch(r"fb\.0\.\d{13}\.\d+", fbp)
    assert f"_fbc={fbc};" in set_cookie and f"_fbp={fbp};" in set_cookie  # set by the server
    for cookie in (first["_fbc"], first["_fbp"]):
        assert cookie["httpOnly"] is False
        assert cookie["sameSite"] == "Lax"
        assert cookie["path"] == "/"
        assert abs(cookie["expires"] - (time.time() + NINETY_DAYS)) < 120
    assert later["_fbc"]["value"] == fbc and later["_fbp"]["value"] == fbp

    events = await site.graph.wait_for_events(2)
    assert {event["event_source_url"] for event in events} == {landing, following}
    for event in events:
        assert event["user_data"]["fbc"] == fbc
        assert event["user_data"]["fbp"] == fbp


ADVANCED_MATCHING = (
    ", {em: 'Jane.Doe@Example.com', ph: '+1 (650) 555-0100', fn: 'Jane', ln: 'Doe', "
    "ct: 'Menlo Park', zp: '94025', country: 'US', external_id: 'User-42', "
    "password: 'hunter2'}"
)
# None of these can turn up by chance inside a hex hash or a timestamp.
RAW_VALUES = ("Jane", "jane.doe@example.com", "Doe", "(650) 555-0100", "16505550100", "Menlo",
              "User-42", "user-42", "hunter2")


async def test_advanced_matching_from_init_arrives_hashed_never_raw(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("account", page_html(SCRIPT, init_extra=ADVANCED_MATCHING))
    sent = await chromium.run(_beacons_of(context, url))

    [(endpoint, params)] = sent
    assert urlsplit(endpoint).netloc == urlsplit(site.origin).netloc  # first party only
    assert params["ud[em]"] == "Jane.Doe@Example.com"
    assert "ud[password]" not in params  # not an advanced-matching key: stays in the page

    [event] = await site.graph.wait_for_events(1)
    user_data = event["user_data"]
    assert {key: user_data[key] for key in
            ("em", "ph", "fn", "ln", "ct", "zp", "country", "external_id")} == {
        "em": sha("jane.doe@example.com"), "ph": sha("16505550100"), "fn": sha("jane"),
        "ln": sha("doe"), "ct": sha("menlopark"), "zp": sha("94025"), "country": sha("us"),
        "external_id": sha("user-42"),
    }
    upstream = json.dumps([request.body for request in site.graph.requests])
    at_rest = b"".join(path.read_bytes() for path in
                       site.settings.storage.path.parent.glob("gateway.db*"))
    for raw in RAW_VALUES:
        assert raw not in upstream
        assert raw.encode() not in at_rest


async def _beacons_of(context: Any, url: str) -> list[tuple[str, dict[str, str]]]:
    return await beacons(await open_page(context, url))


async def test_consent_revoke_holds_events_and_grant_releases_them_in_order(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("consent", page_html(
        SCRIPT, before="fbq('consent', 'revoke');\n",
        after="fbq('track', 'Lead', {}, {eventID: 'lead-1'});\n",
    ))

    async def visit() -> tuple[list[Any], list[Any], list[Any]]:
        page = await open_page(context, url)
        await page.evaluate(
            "fbq('track', 'AddToCart', {value: 5, currency: 'EUR'}, {eventID: 'cart-1'})")
        held = await beacons(page)
        await page.evaluate("fbq('consent', 'grant')")
        granted = await beacons(page)
        await page.evaluate("fbq('track', 'Contact', {}, {eventID: 'contact-1'})")
        return held, granted, await beacons(page)

    held, granted, after = await chromium.run(visit())
    assert held == []  # nothing was handed to the network while revoked
    assert [params["ev"] for _, params in granted] == ["PageView", "Lead", "AddToCart"]
    assert [params["ev"] for _, params in after][3:] == ["Contact"]  # sent at once now
    events = await site.graph.wait_for_events(4)
    assert sorted(event["event_name"] for event in events) == [
        "AddToCart", "Contact", "Lead", "PageView"]
    assert {event["event_source_url"] for event in events} == {url}


async def test_consent_mode_signals_travel_with_hits_and_denied_ads_reach_no_ad_platform(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("consent-mode", page_html(
        SCRIPT, before="fbq('consent', {ad_storage: 'denied', analytics_storage: 'granted'});\n",
        after="fbq('track', 'Lead', {}, {eventID: 'lead-2'});\n",
    ))

    async def visit() -> list[Any]:
        page = await open_page(context, url)
        sent = await beacons(page)
        await page.evaluate("fbq('consent', {ad_storage: 'granted', ad_user_data: 'granted'})")
        await page.evaluate("fbq('track', 'Contact', {}, {eventID: 'contact-2'})")
        return sent + (await beacons(page))[len(sent):]

    sent = await chromium.run(visit())
    assert [(params["ev"], params["cs"]) for _, params in sent] == [
        ("PageView", "01--"), ("Lead", "01--"), ("Contact", "111-")]
    # The destinations are Meta pixels (consent: ads): only the event after the grant goes.
    events = await site.graph.wait_for_events(1)
    assert [event["event_id"] for event in events] == ["contact-2"]


async def test_event_fired_right_before_navigating_away_still_arrives(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("cart", page_html(SCRIPT, body=(
        "<a id='checkout' href='/shop/thanks' onclick=\"fbq('track', 'InitiateCheckout', "
        "{value: 9.5, currency: 'EUR'}, {eventID: 'checkout-77'})\">Checkout</a>"
    )))
    site.pages["thanks"] = "<!doctype html><title>Thanks</title><p>Thanks!</p>"
    transports: list[tuple[str, str]] = []

    def note(request: Request) -> None:
        if urlsplit(request.url).path == f"{PREFIX}/tr":
            transports.append((request.resource_type, request.method))

    async def leave() -> None:
        context.on("request", note)
        page = await open_page(context, url)
        await page.click("#checkout")  # tracks, then the browser leaves the page at once
        await page.wait_for_url("**/shop/thanks")
        await wait_until(lambda: len(transports) >= 2)

    await chromium.run(leave())
    events = await site.graph.wait_for_events(2)
    [checkout] = [event for event in events if event["event_name"] == "InitiateCheckout"]
    assert checkout["event_id"] == "checkout-77"
    assert checkout["event_source_url"] == url
    assert checkout["custom_data"] == {"value": 9.5, "currency": "EUR"}
    assert transports == [("ping", "POST"), ("ping", "POST")]  # sendBeacon, both times


async def test_two_pixels_track_goes_to_both_and_track_single_to_one(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("two", page_html(SCRIPT, before=f"fbq('init', '{PIXEL_B}');\n"))

    async def visit() -> list[tuple[str, dict[str, str]]]:
        page = await open_page(context, url)
        await page.evaluate(f"""
            fbq('trackSingle', '{PIXEL_B}', 'Lead', {{}}, {{eventID: 'lead-b'}});
            fbq('trackSingleCustom', '{PIXEL_A}', 'Wishlisted', {{sku: 'sku-9'}});
            fbq('trackSingle', '999999999999999', 'Lead');  // never initialised: ignored
        """)
        return await beacons(page)

    sent = await chromium.run(visit())
    assert [(params["id"], params["ev"]) for _, params in sent] == [
        (PIXEL_B, "PageView"), (PIXEL_A, "PageView"), (PIXEL_B, "Lead"),
        (PIXEL_A, "Wishlisted")]
    assert sent[0][1]["eid"] == sent[1][1]["eid"]  # one track call, one event id

    await site.graph.wait_for_events(4)
    received: dict[str, list[tuple[str, str]]] = {PIXEL_A: [], PIXEL_B: []}
    for request in site.graph.accepted:
        received[request.pixel_id] += [(e["event_name"], e["event_id"]) for e in request.events]
    page_view_id = sent[0][1]["eid"]
    assert sorted(received[PIXEL_A]) == sorted(
        [("PageView", page_view_id), ("Wishlisted", sent[3][1]["eid"])])
    assert sorted(received[PIXEL_B]) == sorted([("Lead", "lead-b"), ("PageView", page_view_id)])


async def test_data_processing_options_reach_the_event(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("ldu", page_html(
        SCRIPT, before="fbq('dataProcessingOptions', ['LDU'], 1, 1000);\n"))
    [(_, params)] = await chromium.run(_beacons_of(context, url))
    assert (params["dpo"], params["dpoco"], params["dpost"]) == ("LDU", "1", "1000")
    [event] = await site.graph.wait_for_events(1)
    assert event["data_processing_options"] == ["LDU"]
    assert event["data_processing_options_country"] == 1
    assert event["data_processing_options_state"] == 1000


async def test_mirroring_sends_meta_the_same_event_ids_without_personal_data(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("mirrored", page_html(
        SCRIPT, init_extra=ADVANCED_MATCHING + ", {mirror: true}", body=BUY))
    mirrored: list[dict[str, str]] = []
    meta_requests: list[str] = []

    async def meta_is_unreachable(route: Route) -> None:
        mirrored.append(dict(parse_qsl(urlsplit(route.request.url).query)))
        await route.abort()  # the gateway's copy must not depend on Meta answering

    async def shop() -> str:
        context.on("request", lambda r: meta_requests.append(r.url)
                   if "facebook" in r.url else None)
        await context.route("https://www.facebook.com/tr?**", meta_is_unreachable)
        page = await open_page(context, url)
        fbp = (await wait_for_cookies(context, "_fbp"))["_fbp"]["value"]
        await page.click("#buy")
        await wait_until(lambda: len(mirrored) >= 2)
        return str(fbp)

    fbp = await chromium.run(shop())
    events = await site.graph.wait_for_events(2)
    assert len(mirrored) == 2
    upstream_ids = {(event["event_name"], event["event_id"]) for event in events}
    assert {(hit["ev"], hit["eid"]) for hit in mirrored} == upstream_ids
    for hit in mirrored:
        assert hit["id"] == PIXEL_A and hit["dl"] == url
        assert not [key for key in hit if key.startswith("ud[")]
        assert not [raw for raw in RAW_VALUES if raw in json.dumps(hit)]
    [purchase] = [hit for hit in mirrored if hit["ev"] == "Purchase"]
    assert purchase["cd[value]"] == "42.5" and purchase["fbp"] == fbp
    assert all(u.startswith("https://www.facebook.com/tr?") for u in meta_requests)  # no fbevents
    assert {event["user_data"]["em"] for event in events} == {sha("jane.doe@example.com")}
