"""Typed keys for application state."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

from .alerts import Alerts
from .backpressure import Backpressure
from .config import Settings
from .enrich import Enricher
from .identity.cookies import FirstPartyCookies
from .identity.proxy import TrustedProxies
from .observe import Metrics
from .pipeline import Pipeline
from .relay.worker import RelayWorker
from .reload import ConfigReloader
from .rulesreload import LiveRules
from .storage import Outbox

__all__ = [
    "ALERTS", "BACKPRESSURE", "CLOCK", "COOKIES", "ENRICHER", "HTTP_SESSION", "METRICS",
    "OUTBOX", "PIPELINE", "PROXIES", "RELOADER", "RULES", "SETTINGS", "SHARED", "WORKER", "WORKERS",
]

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
METRICS = web.AppKey("metrics", Metrics)
OUTBOX = web.AppKey("outbox", Outbox)
PIPELINE = web.AppKey("pipeline", Pipeline)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
WORKERS = web.AppKey("workers", list[RelayWorker])
PROXIES = web.AppKey("proxies", TrustedProxies)
COOKIES = web.AppKey("cookies", FirstPartyCookies)
ENRICHER = web.AppKey("enricher", Enricher)
ALERTS = web.AppKey("alerts", Alerts)
BACKPRESSURE = web.AppKey("backpressure", Backpressure)
RELOADER = web.AppKey("reloader", ConfigReloader)
RULES = web.AppKey("rules", LiveRules)
WORKER: web.AppKey[tuple[int, bool]] = web.AppKey("worker")  # (index, relays here)
SHARED = web.AppKey("shared", bool)  # other processes share the outbox (serve --workers N)
