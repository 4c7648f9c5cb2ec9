"""A shop on a sibling origin loading gw.js from the gateway's host, in a real Chromium: a listed
origin sends hits with cookies (CORS with credentials), any other origin is refused."""

from __future__ import annotations

from typing import Any

from ..conftest import PIXEL_A, stored_rows
from .browser import BrowserThread
from .conftest import PREFIX, Site, page_html
from .pages import beacons, open_page, open_page_awaiting_hit, wait_for_cookies

# A credentialed CORS request the page can only read when the gateway allows its origin, and
# one with a JSON body, which makes the browser ask first (a preflight).
CORS_FETCH = """async ([endpoint, pixel]) => {
  const hit = new URLSearchParams({id: pixel, ev: 'Contact', dl: location.href, eid: 'contact-1'});
  const outcome = async (init) => {
    try {
      const answer = await fetch(endpoint, {method: 'POST', credentials: 'include', ...init});
      return [answer.status, answer.type];
    } catch (error) {
      return [error.name, null];  // the browser refused to hand over the answer
    }
  };
  return [await outcome({body: hit}),
          await outcome({body: '{}', headers: {'Content-Type': 'application/json'}})];
}"""


def outbox_rows(site: Site) -> list[tuple[Any, ...]]:
    return [(row.destination, row.state) for row in stored_rows(site.settings)]


async def test_listed_sibling_origin_sends_hits_with_cookies(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("sibling", page_html(site.script_url), server=site.listed)
    endpoint = f"{site.origin}{PREFIX}/tr"

    async def visit() -> tuple[list[Any], dict[str, Any], Any]:
        page = await open_page(context, url)
        cookies = await wait_for_cookies(context, "_fbp")
        fetched = await page.evaluate(CORS_FETCH, [endpoint, PIXEL_A])
        return await beacons(page), cookies, fetched

    sent, cookies, (simple, preflighted) = await chromium.run(visit())
    [(beacon_url, params)] = sent
    assert beacon_url == endpoint  # the `tr` beside the script, on the gateway's host
    assert params["dl"] == url
    assert simple == [204, "cors"]  # readable: the origin is allowed with credentials
    assert preflighted == [415, "cors"]  # preflight passed; the JSON body is refused

    events = await site.graph.wait_for_events(2)
    fbp = cookies["_fbp"]["value"]  # set by the gateway's answer to the sibling page's beacon
    assert cookies["_fbp"]["domain"] == "127.0.0.1"
    assert {event["event_name"] for event in events} == {"PageView", "Contact"}
    for event in events:
        assert event["event_source_url"] == url
        assert event["user_data"]["fbp"] == fbp  # the cookie travelled with the hits


async def test_unlisted_origin_is_refused_and_nothing_is_stored(
    chromium: BrowserThread, context: Any, site: Site
) -> None:
    url = site.page("copycat", page_html(site.script_url), server=site.unlisted)
    endpoint = f"{site.origin}{PREFIX}/tr"

    async def visit() -> tuple[int, str | None, Any]:
        page, answer = await open_page_awaiting_hit(context, url)
        fetched = await page.evaluate(CORS_FETCH, [endpoint, PIXEL_A])
        headers = await answer.all_headers()
        return answer.status, headers.get("access-control-allow-origin"), fetched

    status, allow_origin, (simple, preflighted) = await chromium.run(visit())
    assert (status, allow_origin) == (403, None)  # the beacon: refused, no CORS grant
    assert simple == ["TypeError", None]  # the browser refuses to expose the answer
    assert preflighted == ["TypeError", None]  # the preflight is refused
    assert outbox_rows(site) == []  # the answers have come back: nothing was stored
    assert site.graph.requests == []
