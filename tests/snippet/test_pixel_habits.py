"""Habits of Meta's fbevents.js that pages rely on, in a real Chromium: a PageView when a
single-page app changes the URL, one explicit PageView per pixel and page load, and the
integration's agent carried to the Conversions API as partner_agent."""

from __future__ import annotations

import json
from typing import Any

from ..conftest import PIXEL_A, PIXEL_B, stored_rows
from .browser import BrowserThread
from .conftest import PREFIX, Site, page_html
from .pages import beacons, open_page

SCRIPT = f"{PREFIX}/gw.js"


def views(sent: list[tuple[str, dict[str, str]]]) -> list[tuple[str, str]]:
    """(page URL, referrer) of each PageView hit, in order."""
    return [(params["dl"], params.get("rl", "")) for _, params in sent
            if params["ev"] == "PageView"]


async def test_history_changes_send_a_pageview_like_the_pixel(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("spa", page_html(SCRIPT))
    step = url + "?step=2"

    async def navigate() -> list[tuple[str, dict[str, str]]]:
        page = await open_page(context, url)
        await page.evaluate("history.pushState({}, '', '?step=2')")
        await page.evaluate("history.pushState({}, '', '?step=2')")  # same URL: no PageView
        await page.evaluate("history.go(-2)")  # popstate: back to the first URL
        await page.wait_for_function("window.__beacons.length >= 3", polling=20)
        return await beacons(page)

    sent = await chromium.run(navigate())
    # The referrer of a history PageView is the app's previous URL, as with fbevents.js.
    assert views(sent) == [(url, ""), (step, url), (url, step)]
    assert len({params["eid"] for _, params in sent}) == 3
    events = await site.graph.wait_for_events(3)
    assert sorted(event["event_source_url"] for event in events) == sorted([url, step, url])


async def test_disable_push_state_turns_history_pageviews_off(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("spa-off", page_html(SCRIPT, after="fbq.disablePushState = true;\n"))

    async def navigate() -> list[tuple[str, dict[str, str]]]:
        page = await open_page(context, url)
        await page.evaluate("history.pushState({}, '', '?step=2')")
        await page.evaluate("fbq('track', 'Lead', {}, {eventID: 'lead-spa'})")  # a later hit
        return await beacons(page)

    sent = await chromium.run(navigate())
    assert [params["ev"] for _, params in sent] == ["PageView", "Lead"]
    assert sent[1][1]["dl"] == url + "?step=2"


async def test_a_second_explicit_pageview_is_ignored_unless_duplicates_are_allowed(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("twice", page_html(SCRIPT, before=f"fbq('init', '{PIXEL_B}');\n"))

    async def track() -> tuple[list[Any], list[Any]]:
        page = await open_page(context, url)  # the base code's PageView went to both pixels
        await page.evaluate(f"""
            fbq('track', 'PageView');
            fbq('trackSingle', '{PIXEL_A}', 'PageView');
            fbq('track', 'ViewContent');  // other events are never duplicates
        """)
        before = await beacons(page)
        await page.evaluate("fbq.allowDuplicatePageViews = true; fbq('track', 'PageView')")
        return before, await beacons(page)

    before, after = await chromium.run(track())
    assert [(params["id"], params["ev"]) for _, params in before] == [
        (PIXEL_B, "PageView"), (PIXEL_A, "PageView"), (PIXEL_B, "ViewContent"),
        (PIXEL_A, "ViewContent")]
    assert [(params["id"], params["ev"]) for _, params in after[4:]] == [
        (PIXEL_B, "PageView"), (PIXEL_A, "PageView")]


async def test_the_agent_set_for_a_pixel_reaches_meta_as_partner_agent(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("tagged", page_html(SCRIPT, before=(
        f"fbq('set', 'agent', 'tmgoogletagmanager', '{PIXEL_A}');\nfbq('init', '{PIXEL_B}');\n")))
    sent = await chromium.run(_beacons_of(context, url))

    assert {params["id"]: params.get("a") for _, params in sent} == {
        PIXEL_A: "tmgoogletagmanager", PIXEL_B: None}
    await site.graph.wait_for_requests(2)
    bodies = {request.pixel_id: request.body for request in site.graph.accepted}
    assert bodies[PIXEL_A]["partner_agent"] == "tmgoogletagmanager"
    assert "partner_agent" not in bodies[PIXEL_B]
    fields = {row.pixel_id: row.request_fields for row in stored_rows(site.settings)}
    assert json.loads(fields[PIXEL_A]) == {"partner_agent": "tmgoogletagmanager"}
    assert fields[PIXEL_B] == ""


async def _beacons_of(context: Any, url: str) -> list[tuple[str, dict[str, str]]]:
    return await beacons(await open_page(context, url))
