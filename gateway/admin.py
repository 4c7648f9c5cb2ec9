"""Probes and operator endpoints: /healthz, /readyz (public, no data) and /metrics, /status,
/dead-letters (operators only).

Operator endpoints answer a request that carries `Authorization: Bearer <admin key>` (its SHA-256
in `admin.key_sha256`), or, when no key is configured, a direct connection from this machine
(a loopback peer with no forwarding headers: a proxied public request never qualifies).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import hdrs, web

from . import appkeys
from .accesskeys import key_sha256
from .identity.trustedproxies import parse_ip
from .storage import DEAD_REASONS, DeadLetterFilter

__all__ = ["add_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(f"{prefix}/healthz", healthz)
    app.router.add_get(f"{prefix}/readyz", readyz)
    app.router.add_get(f"{prefix}/metrics", operators_only(metrics))
    app.router.add_get(f"{prefix}/status", operators_only(status))
    app.router.add_get(f"{prefix}/dead-letters", operators_only(dead_letters))
    app.router.add_post(f"{prefix}/dead-letters/replay", operators_only(replay))


def operators_only(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        expected = request.app[appkeys.SETTINGS].admin_key_sha256
        given = request.headers.get(hdrs.AUTHORIZATION, "")
        if expected:
            token = given.removeprefix("Bearer ").strip()
            digest = key_sha256(token)  # survives undecodable header bytes
            if not (given.startswith("Bearer ") and hmac.compare_digest(digest, expected)):
                return web.json_response({"error": "an admin key is required"}, status=401,
                                         headers={hdrs.WWW_AUTHENTICATE: "Bearer"})
        elif not _direct_local(request):
            return web.json_response(
                {"error": "operator endpoints answer local requests only; set admin.key_sha256 "
                          "to reach them from elsewhere"}, status=403)
        return await handler(request)

    return guarded


def _direct_local(request: web.Request) -> bool:
    address = parse_ip(request.remote)
    return (address is not None and address.is_loopback
            and not request.app[appkeys.PROXIES].proxied(request.headers))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the outbox takes writes and every relay worker runs."""
    problems = []
    if not await request.app[appkeys.OUTBOX].writable():
        problems.append("outbox is not writable")
    problems += [
        f"relay worker for destination {w.name} is not running"
        for w in request.app[appkeys.RELAYS] if not w.running
    ]
    if problems:
        return web.json_response({"status": "unavailable", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    metrics, outbox, now = app[appkeys.METRICS], app[appkeys.OUTBOX], app[appkeys.CLOCK]()
    metrics.outbox_rows.clear()
    depth: dict[str, int] = {}
    for (destination, state), count in (await outbox.open_counts()).items():
        metrics.outbox_rows.labels(destination, state).set(count)
        if state in ("pending", "inflight"):
            depth[destination] = depth.get(destination, 0) + count
    oldest = await outbox.oldest_pending()
    stats = app[appkeys.RULES].stats
    for rule, matched, dropped, routed in stats.rows():
        for decision, count in (("matched", matched), ("dropped", dropped), ("routed", routed)):
            metrics.rule_events.labels(rule, decision).set(count)
    metrics.rules_reload_failures.set(app[appkeys.RULES].failed_reloads)
    # Per-destination gauges describe the destinations relaying now: one a reload removed
    # must not keep its last values (a paused one would keep alerting).
    for gauge in (metrics.queue_depth, metrics.oldest_age, metrics.state, metrics.token_invalid):
        gauge.clear()
    for worker in app[appkeys.RELAYS]:
        metrics.queue_depth.labels(worker.name).set(depth.get(worker.name, 0))
        created = oldest.get(worker.name)
        metrics.oldest_age.labels(worker.name).set(now - created if created else 0)
        # Derived when scraped, from the worker itself: nothing to keep in step elsewhere.
        metrics.set_state(worker.name, worker.state)
        metrics.token_invalid.labels(worker.name).set(worker.paused_reason is not None)
    return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")


async def status(request: web.Request) -> web.Response:
    """What a person checks first: each destination's state, queue and last error."""
    app = request.app
    outbox, now = app[appkeys.OUTBOX], app[appkeys.CLOCK]()
    counts = await outbox.open_counts()
    oldest = await outbox.oldest_pending()
    destinations = []
    for worker in app[appkeys.RELAYS]:
        name, destination = worker.name, worker.destination
        created = oldest.get(name)
        destinations.append({
            "name": name,
            "type": destination.settings.type,
            "sends_to": f"{destination.target} via {destination.endpoint}",
            "state": worker.state,
            "circuit": worker.circuit.status(),
            "dry_run": destination.settings.is_dry_run,
            "token_invalid": worker.paused_reason is not None,
            "queued": counts.get((name, "pending"), 0) + counts.get((name, "inflight"), 0),
            "oldest_queued_age_seconds": round(now - created, 3) if created else None,
            "dead_letters": counts.get((name, "dead"), 0),
            "last_error": worker.last_error,
        })
    reloader, rules = app[appkeys.RELOADER], app[appkeys.RULES]
    names = app[appkeys.LIVE].current.by_name
    _, relays = app[appkeys.WORKER]
    # Rows queued for a destination that is no longer configured wait forever: show them.
    orphaned = {dest: n for (dest, state), n in counts.items()
                if dest and dest not in names and state in ("pending", "inflight")
                and relays}
    index, _ = app[appkeys.WORKER]
    return web.json_response({
        "worker": {"index": index, "relays": relays},
        "destinations": destinations,
        "queued_for_unconfigured_destinations": orphaned,
        "backpressure": app[appkeys.BACKPRESSURE].reason,
        "warnings": _warnings(app),
        "config": {"loaded_at": _iso(reloader.loaded_at), "last_error": reloader.last_error},
        "rules": {"rule_set": rules.current.hash, "rules": len(rules.current.rules),
                  "files": list(rules.current.files), "loaded_at": _iso(rules.loaded_at),
                  "last_error": rules.last_error},
    })


def _warnings(app: web.Application) -> list[str]:
    """What looks wrong in the setup from the traffic seen so far."""
    private = app[appkeys.PROXIES].private_peer
    if private is None:
        return []
    return [f"hits arrive from the private address {private} while server.trusted_proxies is "
            "empty: if a proxy forwards them, list it there (docs/deploy-behind-a-cdn.md)"]


def _iso(moment: float | None) -> str | None:
    """A moment for people: ISO 8601 in UTC (`2026-12-07T10:00:00Z`)."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


_FILTERS = ("reason", "destination", "id")
_ROW_ID = re.compile(r"[0-9]{1,18}")  # within SQLite's 64-bit integers


def _selection(request: web.Request, *also: str) -> DeadLetterFilter | web.Response:
    """The filters the CLI takes, as query parameters; anything else is refused, so that a
    misspelt filter never widens a replay to every dead letter."""
    unknown = sorted(set(request.query) - {*_FILTERS, *also})
    if unknown:
        return web.json_response({"error": f"unknown query parameter {unknown[0]!r}; "
                                  f"filters are {', '.join((*_FILTERS, *also))}"}, status=400)
    reason = request.query.get("reason") or None
    if reason is not None and reason not in DEAD_REASONS:
        return web.json_response(
            {"error": f"reason must be one of {', '.join(DEAD_REASONS)}"}, status=400)
    ids = request.query.getall("id", [])
    if not all(_ROW_ID.fullmatch(text) for text in ids):
        return web.json_response({"error": "id must be a row number"}, status=400)
    return DeadLetterFilter(destination=request.query.get("destination") or None, reason=reason,
                            ids=tuple(int(text) for text in ids))


async def dead_letters(request: web.Request) -> web.Response:
    selection = _selection(request, "limit")
    if isinstance(selection, web.Response):
        return selection
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        return web.json_response({"error": "limit must be a whole number from 1 to 1000"},
                                 status=400)
    letters = await request.app[appkeys.OUTBOX].dead_letters(selection, limit)
    return web.json_response({"dead_letters": [letter.as_dict() for letter in letters]})


async def replay(request: web.Request) -> web.Response:
    selection = _selection(request)
    if isinstance(selection, web.Response):
        return selection
    count = await request.app[appkeys.OUTBOX].replay(selection)
    return web.json_response({"replayed": count})
