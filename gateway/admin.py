"""Probes and operator endpoints: /healthz, /readyz (public, no data) and /metrics, /status,
/dead-letters (operators only).

Operator endpoints answer a request that carries `Authorization: Bearer <admin key>` (its SHA-256
in `admin.key_sha256`) on any listener, or, when no key is configured, a request that arrived on
the admin listener (`admin.listen`, loopback only, e.g. 127.0.0.1:9901, as Envoy's admin port),
never one on the public listener: whether a request on the public port came through a proxy
cannot be told reliably (a plain TCP relay, nginx's default proxy_pass and sidecars all look
local), so it is not guessed.
"""

from __future__ import annotations

import contextlib
import hmac
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import hdrs, web

from . import appkeys
from .accesskeys import bearer_token, key_sha256
from .errors import OutboxUnavailable
from .identity.trustedproxies import is_loopback_host
from .storage import DEAD_REASONS, DeadLetterFilter, Outbox, describe
from .whole.view import WholeView, whole_view

__all__ = ["ADMIN_LISTENERS", "add_routes", "dead_letters", "destination_states", "has_admin_key",
           "iso", "outbox_report", "replay", "serve_operators_on", "status"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DROPS_SHOWN_HOURS = 24  # /status counts the drops of the last day, per rule


# (host, port) of the sockets where operator endpoints answer without a key.
ADMIN_LISTENERS: web.AppKey[set[tuple[str, int]]] = web.AppKey("admin_listeners")


def serve_operators_on(app: web.Application, sockname: tuple[str, int] | tuple[Any, ...]) -> None:
    """Mark a listening socket (its `getsockname()`) as the admin listener."""
    app[ADMIN_LISTENERS].add((str(sockname[0]), int(sockname[1])))


def add_routes(app: web.Application, prefix: str) -> None:
    app[ADMIN_LISTENERS] = set()
    app.router.add_get(f"{prefix}/healthz", healthz)
    app.router.add_get(f"{prefix}/readyz", readyz)
    app.router.add_get(f"{prefix}/metrics", operators_only(metrics))
    app.router.add_get(f"{prefix}/status", operators_only(status))
    app.router.add_get(f"{prefix}/dead-letters", operators_only(dead_letters))
    app.router.add_post(f"{prefix}/dead-letters/replay", operators_only(replay))


def has_admin_key(request: web.Request) -> bool:
    """The request carries `Authorization: Bearer <the admin key>` (compared by SHA-256, in
    constant time); never true while no admin key is configured."""
    expected = request.app[appkeys.SETTINGS].admin_key_sha256
    token = bearer_token(request.headers)
    if not expected or not token:
        return False
    digest = key_sha256(token)  # survives undecodable header bytes
    return hmac.compare_digest(digest, expected)


def operators_only(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request.app[appkeys.SETTINGS].admin_key_sha256:
            if not has_admin_key(request):
                return web.json_response({"error": "an admin key is required"}, status=401,
                                         headers={hdrs.WWW_AUTHENTICATE: "Bearer"})
        elif not _on_admin_listener(request):
            listen = request.app[appkeys.SETTINGS].admin_listen or "not configured"
            return web.json_response(
                {"error": "without an admin key, operator endpoints answer only on the admin "
                          f"listener (admin.listen: {listen}); set admin.key_sha256 to reach "
                          "them here"}, status=403)
        elif _from_a_web_page(request):
            return web.json_response(
                {"error": "without an admin key, operator endpoints do not answer web pages "
                          "(a request with an Origin, or a Host that is not this machine)"},
                status=403)
        return await handler(request)

    return guarded


def _from_a_web_page(request: web.Request) -> bool:
    """A keyless admin listener trusts whoever can connect to it: this machine's programs. A
    web page open in a browser on this machine can connect too (a cross-site POST needs no
    preflight; DNS rebinding can even read answers), but browsers mark its requests: an
    `Origin`, a `Sec-Fetch-Site` other than none, or a `Host` that is not a loopback name."""
    headers = request.headers
    if hdrs.ORIGIN in headers or headers.get("Sec-Fetch-Site", "none") != "none":
        return True
    return not is_loopback_host(request.host)


def _on_admin_listener(request: web.Request) -> bool:
    transport = request.transport
    name = transport.get_extra_info("sockname") if transport is not None else None
    if not name:
        return False
    return (str(name[0]), int(name[1])) in request.app[ADMIN_LISTENERS]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when a write to the outbox can commit and every relay worker runs."""
    problems = []
    problem = await request.app[appkeys.OUTBOX].write_problem()
    if problem is not None:
        # The kind of problem only: this probe is public, and a database server's own words
        # after it may name its user or database (/status and the log have them whole).
        problems.append(f"outbox is not writable: {problem.split(': ', 1)[0]}")
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
    counts, oldest, _ = await outbox_report(outbox)
    for (destination, state), count in counts.items():
        metrics.outbox_rows.labels(destination, state).set(count)
        if state in ("pending", "inflight"):
            depth[destination] = depth.get(destination, 0) + count
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
        metrics.token_invalid.labels(worker.name).set(worker.token_invalid)
    return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")


async def status(request: web.Request) -> web.Response:
    """What a person checks first: each destination's state, queue and last error."""
    app = request.app
    outbox, now = app[appkeys.OUTBOX], app[appkeys.CLOCK]()
    counts, oldest, unavailable = await outbox_report(outbox)
    dropped: Counter[str] = Counter()  # events the rules dropped: no rows, only counts
    if unavailable is None:
        with contextlib.suppress(OutboxUnavailable):
            for drop in await outbox.drops(since=now - DROPS_SHOWN_HOURS * 3600):
                dropped[drop.rule] += drop.events
    whole = await whole_view(app)
    destinations = destination_states(app, counts, oldest, now, whole)
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
        # Every serving process on the store (live, then recently gone), from their reports.
        "processes": [{**p, "started_at": iso(p["started_at"]), "seen_at": iso(p["seen_at"])}
                      for p in whole.listed()],
        "destinations": destinations,
        "queued_for_unconfigured_destinations": orphaned,
        "outbox_unavailable": unavailable,
        # Counts are the store's: every process and node on one database reports the same.
        "outbox": {"store": describe(app[appkeys.SETTINGS].storage), "counts": "store-wide"},
        "backpressure": app[appkeys.BACKPRESSURE].reason,
        "warnings": _warnings(app),
        "config": {"loaded_at": iso(reloader.loaded_at), "last_error": reloader.last_error,
                   "waiting_for_restart": list(app[appkeys.LIVE].waiting_for_restart)},
        "rules": {"rule_set": rules.current.hash, "rules": len(rules.current.rules),
                  "files": list(rules.current.files), "loaded_at": iso(rules.loaded_at),
                  "last_error": rules.last_error,
                  f"dropped_last_{DROPS_SHOWN_HOURS}h": dict(sorted(dropped.items()))},
    })


def destination_states(app: web.Application, counts: dict[tuple[str, str], int],
                       oldest: dict[str, float], now: float,
                       whole: WholeView) -> list[dict[str, Any]]:
    """Each live destination's state, queue and last error (from `outbox_report`), as /status
    and the console show them; never a credential. The relay state is merged over the live
    processes that relay the destination (`whole`: from their reports; this process's own as of
    now): with none, `state` is None. `relayed_here`: this process relays it."""
    relays = app[appkeys.RELAYS]
    destinations = []
    for destination in app[appkeys.LIVE].current.destinations:
        name = destination.name
        relay = whole.relay(name) or {}
        created = oldest.get(name)
        destinations.append({
            "name": name,
            "type": destination.settings.type,
            "sends_to": f"{destination.target} via {destination.endpoint}",
            "state": relay.get("state"),
            "relayed_here": relays.get(name) is not None,
            "relayed_by": relay.get("relayed_by", []),
            "paused_reason": relay.get("paused_reason"),
            "circuit": relay.get("circuit"),
            "dry_run": destination.settings.is_dry_run,
            "dry_run_reason": destination.settings.dry_run_reason or None,
            # A console token counts as set even when this key cannot open it.
            "token_set": (destination.settings.sealed_token
                          or not destination.settings.options.missing_credentials),
            "token_invalid": bool(relay.get("token_invalid")),
            "queued": counts.get((name, "pending"), 0) + counts.get((name, "inflight"), 0),
            "oldest_queued_age_seconds": round(now - created, 3) if created else None,
            "dead_letters": counts.get((name, "dead"), 0),
            "last_delivery": iso(relay.get("last_delivery")),
            "last_error": relay.get("last_error"),
            "last_error_at": iso(relay.get("last_error_at")),
        })
    return destinations


async def outbox_report(
    outbox: Outbox,
) -> tuple[dict[tuple[str, str], int], dict[str, float], str | None]:
    """Open counts and oldest queued rows; while the outbox is unavailable (not open yet)
    none, and why: the endpoints still answer with everything else they know."""
    try:
        return await outbox.open_counts(), await outbox.oldest_pending(), None
    except OutboxUnavailable as exc:
        return {}, {}, str(exc)


def _warnings(app: web.Application) -> list[str]:
    """What looks wrong in the setup from the traffic seen so far."""
    private = app[appkeys.PROXIES].private_peer
    if private is None:
        return []
    return [f"hits arrive from the private address {private} while server.trusted_proxies is "
            "empty: if a proxy forwards them, list it there (docs/deploy-behind-a-cdn.md)"]


def iso(moment: float | None) -> str | None:
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
