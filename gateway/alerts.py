"""Alerts a person must act on (a refused access token): a log line, and optionally a JSON POST
to `alerts.webhook_url` (Slack-compatible `text` included). Never carries the token."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

__all__ = ["Alerts"]

log = logging.getLogger(__name__)


class Alerts:
    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        webhook_url: str = "",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._webhook_url = webhook_url
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def raise_alert(self, kind: str, destination: str, message: str) -> None:
        """Log now; post the webhook in the background (a slow webhook never blocks delivery)."""
        log.error("ALERT %s on destination %s: %s", kind, destination, message)
        if not self._webhook_url or self._session is None:
            return
        payload = {
            "alert": kind, "destination": destination, "message": message,
            "at": int(self._clock()), "text": f"tag-gateway: {kind} on {destination}: {message}",
        }
        task = asyncio.create_task(self._post(payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, payload: dict[str, object]) -> None:
        session = self._session
        if session is None:
            return
        try:
            async with session.post(
                self._webhook_url, json=payload, timeout=aiohttp.ClientTimeout(total=5),
                allow_redirects=False,
            ) as response:
                if response.status >= 300:
                    log.warning("alert webhook answered HTTP %d", response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("alert webhook failed: %s", type(exc).__name__)

    async def close(self) -> None:
        """Let pending webhook posts finish (bounded by their own timeout)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
