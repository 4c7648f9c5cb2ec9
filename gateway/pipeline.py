"""From an accepted Event to committed outbox rows: pick destinations, serialize, enqueue.

This is where later stages plug in, in data-flow order: identity and enrichment, normalization
and hashing, validation, then the marketers' rules, before routing and the durable commit.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from .config import DestinationSettings
from .model import Event
from .observe import Metrics
from .outbox import Outbox, OutboxEntry

__all__ = ["Pipeline"]


class Pipeline:
    def __init__(
        self, destinations: Sequence[DestinationSettings], outbox: Outbox, metrics: Metrics
    ) -> None:
        self._destinations = tuple(destinations)
        self._outbox = outbox
        self._metrics = metrics

    def route(self, event: Event) -> list[DestinationSettings]:
        """Every destination that accepts the pixel id the event was received for."""
        pixel_id = event.context.pixel_id
        return [d for d in self._destinations if d.accepts_pixel(pixel_id)]

    async def submit(self, event: Event) -> list[str]:
        """Commit the event's rows; return the names of the destinations it will go to."""
        payload = orjson.dumps(event.data)
        destinations = self.route(event)
        entries = [self._entry(event, payload, d) for d in destinations]
        if not entries:
            # Kept, not silently dropped: a person can see which pixel ids arrive unconfigured.
            entries = [self._entry(event, payload, None)]
        await self._outbox.enqueue(entries)
        if destinations:
            for d in destinations:
                self._metrics.inc("gateway_events_enqueued_total", destination=d.name)
        else:
            self._metrics.inc("gateway_events_unrouted_total")
        return [d.name for d in destinations]

    @staticmethod
    def _entry(
        event: Event, payload: bytes, destination: DestinationSettings | None
    ) -> OutboxEntry:
        context = event.context
        if destination is None:
            return OutboxEntry(
                destination="", pixel_id=context.pixel_id,
                test_event_code=context.test_event_code, event_name=event.name,
                event_id=event.id, event_time=int(event.data["event_time"]), payload=payload,
                state="unrouted", note=f"no destination accepts pixel {context.pixel_id}",
            )
        return OutboxEntry(
            destination=destination.name,
            pixel_id=destination.pixel_id or context.pixel_id,
            test_event_code=context.test_event_code or destination.test_event_code,
            event_name=event.name,
            event_id=event.id,
            event_time=int(event.data["event_time"]),
            payload=payload,
        )
