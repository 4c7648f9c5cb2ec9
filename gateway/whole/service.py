"""Running the whole gateway's view in a serving process: its report every few seconds, and
(with the console on) live events across processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from .. import appkeys
from .feed import LiveFeed
from .identity import this_process
from .report import Reporter
from .view import REPORTER

__all__ = ["add_whole"]


def add_whole(app: web.Application, worker: int) -> None:
    """Name this process (its live events say which it is) and run its report and live feed
    alongside the app (after the outbox opens, stopped before it closes)."""
    process = this_process(worker)
    app[appkeys.EVENTS].origin = process.origin()
    app[REPORTER] = Reporter(app, process)
    app.cleanup_ctx.append(_whole_ctx)


async def _whole_ctx(app: web.Application) -> AsyncIterator[None]:
    reporter = app[REPORTER]
    tasks = [asyncio.create_task(reporter.run(), name="whole:report")]
    # Called after the swap's other listeners (the relay's) have started their workers.
    stop_listening = app[appkeys.LIVE].listen(lambda _old, _new: reporter.soon())
    feed = None
    if app[appkeys.SETTINGS].admin_key_sha256:  # the console is on: someone may watch
        feed = LiveFeed(app[appkeys.EVENTS], app[appkeys.OUTBOX], reporter.process,
                        app[appkeys.CLOCK])
        tasks.append(asyncio.create_task(feed.run(), name="whole:live"))
    yield
    stop_listening()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if feed is not None:
        await feed.stop()
    await reporter.stopped()
