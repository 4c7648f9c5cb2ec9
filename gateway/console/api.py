"""The console's JSON answers (names fixed by the issue: outside checks rely on them).

Destinations, dead letters and status come from the same functions as the operator routes
(admin.py); nothing here reads a credential, so none can reach an answer.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import admin, appkeys
from ..whole.view import whole_view
from .destinations import listing
from .guard import SESSION
from .sessions import Session

__all__ = ["dead_letters", "destinations", "replay", "rules", "session", "status", "traffic"]

# The same answers as /status, /dead-letters and /dead-letters/replay.
status = admin.status
dead_letters = admin.dead_letters
replay = admin.replay


def _worker(app: web.Application) -> dict[str, Any]:
    index, relays = app[appkeys.WORKER]
    return {"index": index, "relays": relays}


async def session(request: web.Request) -> web.Response:
    """Who is asking: the CSRF token of a cookie session (None with a bearer key), when the
    session ends, and which worker answered."""
    current = request.get(SESSION)
    if isinstance(current, Session):
        answer = {"via": "session", "csrf_token": current.csrf,
                  "expires_at": admin.iso(current.expires_at)}
    else:
        answer = {"via": "admin key", "csrf_token": None, "expires_at": None}
    return web.json_response({**answer, "worker": _worker(request.app)})


async def destinations(request: web.Request) -> web.Response:
    """The live destinations, config.yaml's and the console's (and the console's not in use),
    never a token; the relay state merged over every live process (gateway/whole)."""
    app = request.app
    counts, oldest, _ = await admin.outbox_report(app[appkeys.OUTBOX])
    whole = await whole_view(app)
    rows = admin.destination_states(app, counts, oldest, app[appkeys.CLOCK](), whole)
    # No live process relays it: its relaying process is gone (or, with the store unavailable,
    # unknown: it may relay elsewhere).
    nobody = "relayed_elsewhere" if whole.unavailable else "not_relayed"
    answer = []
    for row in rows:
        state = row["state"] or nobody
        if row["dry_run"]:
            state = "dry_run"
        answer.append({**row, "source": "config", "state": state, "dead": row["dead_letters"]})
    return web.json_response(listing(app, answer))


async def rules(request: web.Request) -> web.Response:
    """The rule set in force, its tests' results, and the last reload error with where."""
    app = request.app
    live = app[appkeys.RULES]
    stats = live.stats
    return web.json_response({
        "rule_set": live.current.hash,
        "files": list(live.current.files),
        "rules": [{"name": rule.name, "enabled": rule.enabled,
                   "matched": stats.matched[rule.name], "dropped": stats.dropped[rule.name],
                   "routed": stats.routed[rule.name]} for rule in live.current.rules],
        "loaded_at": admin.iso(live.loaded_at),
        "tests": [{"file": t.file, "line": t.line, "name": t.name, "passed": t.passed,
                   "message": t.message} for t in live.tests],
        "last_error": live.last_error,
        "last_error_problems": [problem.as_dict() for problem in live.last_problems],
        "failed_reloads": live.failed_reloads,
        "worker": _worker(app),
    })


async def traffic(request: web.Request) -> web.Response:
    """Events received and delivered per minute over the last hour, every process summed."""
    return web.json_response((await whole_view(request.app)).traffic())
