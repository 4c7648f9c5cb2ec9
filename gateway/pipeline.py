"""From an accepted Event to committed outbox rows, in data-flow order:
enrich (UA, geo) and hash user_data -> rules -> validate -> route -> durable commit.

Rules run before validation because they change what is valid (renaming an event to Purchase
makes value and currency required). An event a rule drops is counted and goes nowhere. One that
fails validation is not relayed but kept: an `invalid` row with its reasons. One that no
destination takes (no destination accepts its pixel, or routing rules that share no name) is
kept as an `unrouted` row. Every row records the hash of the rule set that decided it.
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
from .rulesreload import LiveRules
from .storage import Outbox, OutboxEntry
from .validate import expiry, validate_event

__all__ = ["Pipeline", "Submission"]


@dataclass
class Submission:
    """What happened to one event."""

    destinations: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # reasons, when the event is invalid
    unstorable: str | None = None  # why the event could not even be stored
    dropped_by: str | None = None  # the rule that dropped it


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
        rules: LiveRules | None = None,
    ) -> None:
        self._rules = rules
        self._destinations = tuple(destinations)
        self._backpressure = backpressure
        self._outbox = outbox
        self._metrics = metrics
        self._enricher = enricher
        self._clock = clock

    @property
    def destinations(self) -> tuple[DestinationSettings, ...]:
        return self._destinations

    def use_destinations(self, destinations: Sequence[DestinationSettings]) -> None:
        """New settings for the same destinations (config reload)."""
        self._destinations = tuple(destinations)

    def route(self, event: Event) -> list[DestinationSettings]:
        """The destinations the rules routed it to, else every one accepting its pixel."""
        decision = event.context.decision
        if decision is not None:
            return decision.select(self._destinations, event.context.pixel_id)
        pixel_id = event.context.pixel_id
        return [d for d in self._destinations if d.accepts_pixel(pixel_id)]

    def check_room(self) -> None:
        """OutboxFull while backpressure holds: callers with costly work ahead check first."""
        if self._backpressure is not None and self._backpressure.reason:
            raise OutboxFull(self._backpressure.reason)

    def prepare(self, event: Event) -> list[str]:
        """Enrich the event, hash its user_data and apply the rules; return Meta's reasons to
        refuse it (none for an event the rules dropped: it goes nowhere anyway)."""
        self._enricher.enrich(event)
        if self._rules is not None:
            rule_set = self._rules.current  # read once: a reload never splits an event
            event.context.decision = rule_set.apply(event, self._rules.stats)
            event.context.rule_set = rule_set.hash
            if event.context.decision.dropped:
                return []
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
        self.check_room()
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
        decision = event.context.decision
        if decision is not None and decision.dropped:
            return Submission(dropped_by=decision.dropped_by), []
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
            if decision is not None and decision.routed_nowhere:
                note = "routing rules named no destination in common: " + ", ".join(
                    decision.matched)
            return Submission(), [self._entry(event, payload, None, "unrouted", note)]
        return (Submission(destinations=[d.name for d in destinations]),
                [self._entry(event, payload, d) for d in destinations])

    def _count(self, submission: Submission, event: Event) -> None:
        if submission.dropped_by:
            self._metrics.count(self._metrics.dropped, submission.dropped_by)
        elif submission.invalid:
            self._metrics.count(self._metrics.invalid, event.context.source)
        elif submission.destinations:
            for name in submission.destinations:
                self._metrics.count(self._metrics.enqueued, name)
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
            rule_set=context.rule_set,
        )
