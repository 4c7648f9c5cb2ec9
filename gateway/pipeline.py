"""From an accepted Event to committed outbox rows, in data-flow order:
enrich (UA, geo) and hash user_data -> validate -> [rules, later] -> route -> durable commit.

An event that fails validation is not relayed but kept: one `invalid` row with its reasons.
An event no destination accepts is kept as one `unrouted` row. Both are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from .backpressure import Backpressure
from .config import DestinationSettings
from .enrich import Enricher
from .errors import HitError, OutboxFull
from .model import Event
from .observe import Metrics
from .outbox import Outbox, OutboxEntry
from .validate import expiry, validate_event

__all__ = ["Pipeline", "Submission"]


@dataclass
class Submission:
    """What happened to one event."""

    destinations: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # reasons, when the event is invalid


class Pipeline:
    def __init__(
        self,
        destinations: Sequence[DestinationSettings],
        outbox: Outbox,
        metrics: Metrics,
        enricher: Enricher,
        clock: Callable[[], float],
        backpressure: Backpressure | None = None,
    ) -> None:
        self._destinations = tuple(destinations)
        self._backpressure = backpressure
        self._outbox = outbox
        self._metrics = metrics
        self._enricher = enricher
        self._clock = clock

    def use_destinations(self, destinations: Sequence[DestinationSettings]) -> None:
        """New settings for the same destinations (config reload)."""
        self._destinations = tuple(destinations)

    def route(self, event: Event) -> list[DestinationSettings]:
        """Every destination that accepts the pixel id the event was received for."""
        pixel_id = event.context.pixel_id
        return [d for d in self._destinations if d.accepts_pixel(pixel_id)]

    async def submit(self, event: Event) -> Submission:
        """Enrich, validate and commit the event's rows; say where it will go."""
        if self._backpressure is not None and self._backpressure.reason:
            raise OutboxFull(self._backpressure.reason)
        self._enricher.enrich(event)
        reasons = validate_event(event.data, self._clock())
        try:
            payload = orjson.dumps(event.data)
        except TypeError:
            # Integers beyond 64 bits or broken text deep in a value: refuse, do not crash.
            raise HitError("the event holds a value that cannot be sent as JSON "
                           "(an integer out of range or invalid text)") from None
        if reasons:
            note = "; ".join(reasons)
            await self._outbox.enqueue([self._entry(event, payload, None, "invalid", note)])
            self._metrics.invalid.labels(event.context.source).inc()
            return Submission(invalid=reasons)
        destinations = self.route(event)
        if not destinations:
            # Kept, not silently dropped: a person can see which pixel ids arrive unconfigured.
            note = f"no destination accepts pixel {event.context.pixel_id}"
            await self._outbox.enqueue([self._entry(event, payload, None, "unrouted", note)])
            self._metrics.unrouted.inc()
            return Submission()
        await self._outbox.enqueue([self._entry(event, payload, d) for d in destinations])
        for d in destinations:
            self._metrics.enqueued.labels(d.name).inc()
        return Submission(destinations=[d.name for d in destinations])

    @staticmethod
    def _entry(
        event: Event,
        payload: bytes,
        destination: DestinationSettings | None,
        state: str = "pending",
        note: str | None = None,
    ) -> OutboxEntry:
        context = event.context
        return OutboxEntry(
            destination=destination.name if destination else "",
            pixel_id=(destination.pixel_id if destination else "") or context.pixel_id,
            test_event_code=context.test_event_code
            or (destination.test_event_code if destination else ""),
            event_name=event.name,
            event_id=event.id,
            event_time=int(event.data["event_time"]),
            expires_at=expiry(event.data),
            payload=payload,
            state=state,
            note=note,
        )
