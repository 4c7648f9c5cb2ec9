"""`GET|POST /tr`: browser hits in the Meta pixel's parameter format.

GET answers a 1x1 GIF (image beacons), POST answers 204 (sendBeacon, fetch, forms); both only
after the event is committed to the outbox, and both carry the first-party `_fbp`/`_fbc`
cookies. A hit that cannot be read gets a 4xx naming the parameter and nothing is stored. A hit
that reads fine but breaks Meta's rules (no page URL, no user agent, a Purchase without value)
is stored as `invalid` with its reasons and answered 400 with those reasons.
"""

from __future__ import annotations

import base64
import logging

from aiohttp import hdrs, web

from .. import appkeys
from ..errors import HitError
from ..identity.consent import Consent
from ..identity.cookies import MAX_AGE, OWNER, BrowserIds, browser_cookies
from ..live import Snapshot
from ..model import Event
from .body import is_utf8
from .hitevent import build_hit_event
from .hitparams import read_hit_params

__all__ = ["handle_hit"]

log = logging.getLogger(__name__)

PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {hdrs.CACHE_CONTROL: "no-store, no-cache, must-revalidate, max-age=0"}


def clean_text(value: str | None) -> str | None:
    """Header and cookie text as valid UTF-8 (undecodable bytes become U+FFFD)."""
    if value is None or is_utf8(value):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


async def handle_hit(request: web.Request) -> web.StreamResponse:
    app = request.app
    metrics = app[appkeys.METRICS]
    now = app[appkeys.CLOCK]()
    snapshot = app[appkeys.LIVE].current
    try:
        params = await read_hit_params(request)
        # Only the first-party ids the configured platforms use; a site's other cookies are
        # not even parsed. (Their values need no cleaning: only cookie-safe values are kept.)
        found = browser_cookies(request.headers.get(hdrs.COOKIE), snapshot.cookie_names)
        ids = _browser_ids(request, params, found, now)
        event = build_hit_event(
            params,
            ip=app[appkeys.PROXIES].client_ip(request.remote, request.headers),
            user_agent=clean_text(request.headers.get(hdrs.USER_AGENT)),
            fbp=ids.fbp,
            fbc=ids.fbc,
            now=now,
            page_url=clean_text(request.headers.get(hdrs.REFERER)),
        )
    except HitError as exc:
        metrics.count(metrics.hits, "rejected")
        if app[appkeys.EVENTS].listening:
            app[appkeys.EVENTS].refused("browser", exc.reason, now)
        raise
    allowed = _cookie_owners(snapshot, event.context.consent)
    if OWNER not in allowed:
        ids.to_set.clear()  # no Meta destination, or no consent to store ad cookies
    if snapshot.cookie_names:
        _platform_cookies(snapshot, allowed, found, ids, event, now,
                          app[appkeys.COOKIES].enabled)
    submission = await app[appkeys.PIPELINE].submit(event)
    response: web.Response
    if submission.invalid:
        metrics.count(metrics.hits, "invalid")
        response = web.json_response(
            {"error": "the event breaks the destinations' rules and will not be sent",
             "reasons": submission.invalid},
            status=400, headers=NO_STORE,
        )
    else:
        metrics.count(metrics.hits, "accepted")
        if request.method == "GET":
            response = web.Response(body=PIXEL_GIF, content_type="image/gif", headers=NO_STORE)
        else:
            response = web.Response(status=204, headers=NO_STORE)
    _set_cookies(response, ids)
    return response


def _browser_ids(request: web.Request, params: dict[str, str], found: dict[str, str],
                 now: float) -> BrowserIds:
    proxies = request.app[appkeys.PROXIES]
    peer, headers = request.remote, request.headers
    return request.app[appkeys.COOKIES].resolve(
        host=proxies.host(peer, headers, request.host),
        secure=proxies.scheme(peer, headers, request.scheme) == "https",
        cookies=found,
        params=params,
        now_ms=int(now * 1000),
    )


def _cookie_owners(snapshot: Snapshot, consent: Consent | None) -> frozenset[str]:
    """The destination types whose first-party cookies this visitor may get: those configured,
    less those whose every destination lacks the consent to store cookies."""
    if consent is None:
        return snapshot.kind_names
    return frozenset(d.kind.name for d in snapshot.destinations
                     if consent.allows_storage(d.settings.consent))


def _platform_cookies(snapshot: Snapshot, allowed: frozenset[str], found: dict[str, str],
                      ids: BrowserIds, event: Event, now: float, set_cookies: bool) -> None:
    """Other platforms' first-party cookies: kept with the event, and set again (or minted)."""
    platform: dict[str, str] = {}
    click_ids = event.context.click_ids or {}
    for kind in snapshot.kinds:
        if kind.cookie_names and kind.name in allowed:
            try:
                cookies = kind.first_party_cookies(found, now=now, labels=ids.labels,
                                                   click_ids=click_ids)
            except Exception:  # one type's bug must not cost the hit (and Meta's event)
                log.exception("destination type %s: reading its cookies failed", kind.name)
                continue
            if not set_cookies:
                # Cookies off: what the visitor has travels with the event; nothing is minted
                # (a new id per hit would count every hit as a new visitor).
                cookies = {k: v for k, v in cookies.items() if found.get(k) == v}
            platform.update(cookies)
    if platform:
        event.context.cookies = platform
        if set_cookies:
            ids.to_set.update(platform)


def _set_cookies(response: web.Response, ids: BrowserIds) -> None:
    """Set-Cookie headers written directly: the values are known cookie-safe (fb.N.N.[A-Za-z0-9_-])
    and http.cookies' Morsel machinery is a noticeable share of a hit's cost."""
    attributes = f"; Max-Age={MAX_AGE}; Path=/; SameSite=Lax"
    if ids.domain:
        attributes = f"; Domain={ids.domain}" + attributes
    if ids.secure:
        attributes += "; Secure"
    for name, value in ids.to_set.items():
        response.headers.add(hdrs.SET_COOKIE, f"{name}={value}{attributes}")
