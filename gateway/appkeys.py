"""Typed keys for application state."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

from .accesskeys import KeysInForce
from .alerts import Alerts
from .backpressure import Backpressure
from .enrich import Enricher
from .eventbus import EventBus
from .identity.cookies import FirstPartyCookies
from .identity.trustedproxies import TrustedProxies
from .live import Live
from .liverules import LiveRules
from .observe import Metrics
from .pipeline import Pipeline
from .recordwatch import RecordWatch
from .relay.relays import Relays
from .reload import Reloader
from .settings import Settings
from .storage import Outbox

__all__ = [
    "ACCESS_KEYS",
    "ALERTS",
    "BACKPRESSURE",
    "CLOCK",
    "COOKIES",
    "ENRICHER",
    "EVENTS",
    "HTTP_SESSION",
    "LIVE",
    "METRICS",
    "OUTBOX",
    "PIPELINE",
    "PROXIES",
    "RECORDS",
    "RELAYS",
    "RELOADER",
    "RULES",
    "SETTINGS",
    "SHARED",
    "WORKER",
]

SETTINGS = web.AppKey("settings", Settings)  # as started (see LIVE for what is in force)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
METRICS = web.AppKey("metrics", Metrics)
OUTBOX = web.AppKey("outbox", Outbox)
PIPELINE = web.AppKey("pipeline", Pipeline)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
LIVE = web.AppKey("live", Live)  # the settings and destinations in force (swapped on reload)
RELAYS = web.AppKey("relays", Relays)  # this process's relay workers (none unless it relays)
PROXIES = web.AppKey("proxies", TrustedProxies)
ACCESS_KEYS = web.AppKey("access_keys", KeysInForce)  # the server ingress's: config + console
COOKIES = web.AppKey("cookies", FirstPartyCookies)
ENRICHER = web.AppKey("enricher", Enricher)
ALERTS = web.AppKey("alerts", Alerts)
BACKPRESSURE = web.AppKey("backpressure", Backpressure)
RELOADER: web.AppKey[Reloader[Settings]] = web.AppKey("reloader")  # config.yaml
RULES = web.AppKey("rules", LiveRules)
WORKER: web.AppKey[tuple[int, bool]] = web.AppKey("worker")  # (index, relays here)
EVENTS = web.AppKey("events", EventBus)  # what happens now, for the console's live view
# The console's records (destinations, access keys, sessions) as this process last read them.
RECORDS = web.AppKey("records", RecordWatch)
SHARED = web.AppKey("shared", bool)  # other processes share the outbox (serve --workers N)
