"""`GET admin/api/events/stream`: the live events of every process and node (this process's
from its event bus, the others' through the store: gateway/whole/feed.py) as server-sent
events.

Each event is one `event: <kind>` (incoming, outgoing, lost) with its JSON as `data`;
a comment every `HEARTBEAT_SECONDS` keeps proxies from closing an idle stream. A cookie
session's stream ends when the session would, or within `SESSION_CHECK_SECONDS` of a sign-out
on any worker (the browser reconnects, or finds itself signed out); every stream ends when the
gateway shuts down.
"""

from __future__ import annotations

import contextlib

import orjson
from aiohttp import hdrs, web

from .. import appkeys
from ..errors import OutboxUnavailable
from .guard import SESSION, SESSIONS
from .sessions import Session

__all__ = ["HEARTBEAT_SECONDS", "LOOK_SECONDS", "SESSION_CHECK_SECONDS", "end_streams", "events"]

HEARTBEAT_SECONDS = 15.0
LOOK_SECONDS = 1.0  # how often an idle stream checks that its watcher is still there
SESSION_CHECK_SECONDS = 5.0  # how often a cookie session's stream reads its session again


async def events(request: web.Request) -> web.StreamResponse:
    app = request.app
    clock = app[appkeys.CLOCK]
    session = request.get(SESSION)
    until = session.expires_at if isinstance(session, Session) else None
    response = web.StreamResponse(headers={
        hdrs.CONTENT_TYPE: "text/event-stream", hdrs.CACHE_CONTROL: "no-store",
        "X-Accel-Buffering": "no",  # nginx: pass each event on at once
    })
    bus = app[appkeys.EVENTS]
    subscription = bus.subscribe()
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n: live events of every worker and node\n\n")
        quiet = 0.0  # seconds since the last write
        checked = clock()
        while not subscription.closed and (until is None or clock() < until):
            if isinstance(session, Session) and clock() - checked >= SESSION_CHECK_SECONDS:
                checked = clock()
                with contextlib.suppress(OutboxUnavailable):  # cannot tell now: ask again
                    if not await app[SESSIONS].active(session):
                        break  # signed out (perhaps on another worker)
            item = await subscription.get(LOOK_SECONDS)
            if item is None:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the watcher went away: stop listening now, not at the next write
                quiet += LOOK_SECONDS
                if quiet >= HEARTBEAT_SECONDS:
                    await response.write(b": keep-alive\n\n")
                    quiet = 0.0
                continue
            kind = str(item.get("kind", "event")).encode()
            await response.write(b"event: " + kind + b"\ndata: " + orjson.dumps(item) + b"\n\n")
            quiet = 0.0
    except (ConnectionResetError, ConnectionError):
        pass  # the watcher went away
    finally:
        bus.unsubscribe(subscription)
    return response


async def end_streams(app: web.Application) -> None:
    """At shutdown: let every open stream end instead of holding the drain up."""
    app[appkeys.EVENTS].close()
