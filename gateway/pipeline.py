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
    unstorable: str | None = None  # why the event could not even be stored


def _whole(value: object) -> int:
    """event_time as stored in its own column; 0 when an invalid event has none usable."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if abs(value) < 2**62 else 0


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

    def prepare(self, event: Event) -> list[str]:
        """Enrich the event and hash its user_data; return Meta's reasons to refuse it."""
        self._enricher.enrich(event)
        return validate_event(event.data, self._clock())

    async def submit(self, event: Event) -> Submission:
        """Prepare and commit one event; HitError if it cannot even be stored."""
        [submission] = await self.submit_many([event])
        if submission.unstorable:
            raise HitError(submission.unstorable)
        return submission

    async def submit_many(
        self, events: Sequence[Event], reasons: Sequence[list[str]] | None = None
    ) -> list[Submission]:
        """Commit the rows of several events in one go; say what happened to each.

        `reasons`: what `prepare` returned for each event, when the caller already prepared
        them (server ingress checks a whole request before committing any of it)."""
        if self._backpressure is not None and self._backpressure.reason:
            raise OutboxFull(self._backpressure.reason)
        entries: list[OutboxEntry] = []
        submissions = []
        for index, event in enumerate(events):
            problems = reasons[index] if reasons is not None else self.prepare(event)
            submission, rows = self._decide(event, problems)
            entries.extend(rows)
            submissions.append(submission)
        if entries:
            await self._outbox.enqueue(entries)
        for submission, event in zip(submissions, events, strict=True):
            self._count(submission, event)
        return submissions

    def _decide(self, event: Event, reasons: list[str]) -> tuple[Submission, list[OutboxEntry]]:
        try:
            payload = orjson.dumps(event.data)
        except TypeError:
            # Integers beyond 64 bits or broken text deep in a value: refuse, do not crash.
            return Submission(unstorable="the event holds a value that cannot be sent as JSON "
                              "(an integer out of range or invalid text)"), []
        if reasons:
            note = "; ".join(reasons)
            return Submission(invalid=reasons), [self._entry(event, payload, None, "invalid", note)]
        destinations = self.route(event)
        if not destinations:
            # Kept, not silently dropped: a person can see which pixel ids arrive unconfigured.
            note = f"no destination accepts pixel {event.context.pixel_id}"
            return Submission(), [self._entry(event, payload, None, "unrouted", note)]
        return (Submission(destinations=[d.name for d in destinations]),
                [self._entry(event, payload, d) for d in destinations])

    def _count(self, submission: Submission, event: Event) -> None:
        if submission.invalid:
            self._metrics.invalid.labels(event.context.source).inc()
        elif submission.destinations:
            for name in submission.destinations:
                self._metrics.enqueued.labels(name).inc()
        elif not submission.unstorable:
            self._metrics.unrouted.inc()

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
            event_name=str(event.data.get("event_name", "")),
            event_id=str(event.data.get("event_id", "")),
            event_time=_whole(event.data.get("event_time")),
            expires_at=expiry(event.data),
            payload=payload,
            state=state,
            note=note,
            request_fields=context.request_fields,
        )
