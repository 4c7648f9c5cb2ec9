"""From an accepted Event to committed outbox rows, in data-flow order:
enrich (UA, geo) and hash user_data -> rules -> route -> validate per destination -> commit.

Rules run before validation because they change what is valid (renaming an event to Purchase makes
value and currency required). An event a rule drops goes nowhere: it is counted (metric, outbox)
and told in the log (drops.py). Each destination the event is routed to validates it by its type's
rules (an event Meta would refuse can still go to a destination of another type). One that every
routed destination refuses is not relayed but kept: an `invalid` row with the reasons. One that no
destination takes (no destination accepts its pixel, or routing rules that share no name) is kept
as an `unrouted` row, unless the configured types would all refuse it anyway (then `invalid`). A
destination the visitor's consent does not allow gets nothing, not even a row (counted); nor does
one whose platform has no test mode for an event sent with Meta's test_event_code. Every row
records the hash of the rule set that decided it. One live snapshot of the destinations is read per
event, at `prepare`. Whoever watches the live events (eventbus.py, the console) is told what
became of each event once it is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from .backpressure import Backpressure
from .destinations import Destination
from .drops import DropReport
from .enrich import Enricher
from .errors import HitError, OutboxFull
from .eventbus import EventBus
from .live import Live
from .liverules import LiveRules
from .model import Event
from .observe import Metrics
from .storage import Outbox, OutboxEntry

__all__ = ["Pipeline", "Route", "Submission"]


@dataclass
class Submission:
    """What happened to one event."""

    destinations: list[str] = field(default_factory=list)
    refused_by: list[str] = field(default_factory=list)  # destinations whose type refused it
    withheld_from: list[str] = field(default_factory=list)  # not allowed by the consent
    invalid: list[str] = field(default_factory=list)  # reasons, when the event is invalid
    unstorable: str | None = None  # why the event could not even be stored
    dropped_by: str | None = None  # the rule that dropped it


@dataclass(slots=True)
class Route:
    """Where a prepared event goes: the destinations that take it, and why the others
    refuse it."""

    destinations: list[Destination]
    refused: list[tuple[Destination, list[str]]]
    reasons: list[str]  # why it goes nowhere: every destination that could take it refuses it
    withheld: list[Destination]  # the visitor's consent does not allow these (nothing stored)


def _whole(value: object) -> int:
    """event_time as stored in its own column; 0 when an invalid event has none usable."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if abs(value) < 2**62 else 0


class Pipeline:
    def __init__(
        self,
        live: Live,
        outbox: Outbox,
        metrics: Metrics,
        enricher: Enricher,
        clock: Callable[[], float],
        backpressure: Backpressure | None = None,
        rules: LiveRules | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._live = live
        self._bus = bus
        self._rules = rules
        self._backpressure = backpressure
        self._outbox = outbox
        self._metrics = metrics
        self._enricher = enricher
        self._clock = clock
        self._drops = DropReport(outbox, clock)

    def check_room(self) -> None:
        """OutboxFull while backpressure holds: callers with costly work ahead check first."""
        if self._backpressure is not None and self._backpressure.reason:
            raise OutboxFull(self._backpressure.reason)

    def prepare(self, event: Event) -> list[str]:
        """Enrich the event, hash its user_data, apply the rules and route it; return the
        reasons it is refused as a whole (none for an event the rules dropped: it goes nowhere
        anyway)."""
        self._enricher.enrich(event)
        context = event.context
        if self._rules is not None:
            rule_set = self._rules.current  # read once: a reload never splits an event
            context.decision = rule_set.apply(event, self._rules.stats)
            context.rule_set = rule_set.hash
            if context.decision.dropped:
                return []
        route = context.route = self._route(event)
        return route.reasons

    def _route(self, event: Event) -> Route:
        """The destinations the rules routed it to, else every one accepting its pixel; each
        validates the event by its type (once per type)."""
        configured = self._live.current.destinations
        pixel_id = event.context.pixel_id
        decision = event.context.decision
        if decision is not None:
            candidates = decision.select(configured, pixel_id)
        else:
            candidates = [d for d in configured if d.accepts_pixel(pixel_id)]
        withheld: list[Destination] = []
        consent = event.context.consent
        if consent is not None:
            withheld = [d for d in candidates if not consent.allows(d.settings.consent)]
        if event.context.test_event_code:  # a test of Meta's: never a real conversion elsewhere
            withheld += [d for d in candidates
                         if not d.kind.takes_test_events and d not in withheld]
        if withheld:
            candidates = [d for d in candidates if d not in withheld]
            if not candidates:
                return Route([], [], [], withheld)
        now = self._clock()
        verdicts: dict[str, list[str]] = {}
        taken: list[Destination] = []
        refused: list[tuple[Destination, list[str]]] = []
        # With no candidate, the configured types still say whether it is valid at all.
        for destination in candidates or configured:
            kind = destination.settings.type
            reasons = verdicts.get(kind)
            if reasons is None:
                reasons = verdicts[kind] = destination.kind.validate(event.data, now)
            if candidates:
                (refused.append((destination, reasons)) if reasons else taken.append(destination))
        valid = not verdicts or any(not reasons for reasons in verdicts.values())
        whole = [] if taken or valid else _union(verdicts.values())
        return Route(taken, refused, whole, withheld)

    async def submit(self, event: Event) -> Submission:
        """Prepare and commit one event; HitError if it cannot even be stored."""
        [submission] = await self.submit_many([event])
        if submission.unstorable:
            raise HitError(submission.unstorable)
        return submission

    async def submit_many(
        self, events: Sequence[Event], prepared: bool = False
    ) -> list[Submission]:
        """Commit the rows of several events in one go; say what happened to each.

        `prepared`: the caller already ran `prepare` on each event (server ingress checks a
        whole request before committing any of it)."""
        self.check_room()
        entries: list[OutboxEntry] = []
        submissions = []
        for event in events:
            if not prepared:
                self.prepare(event)
            submission, rows = self._decide(event)
            entries.extend(rows)
            submissions.append(submission)
        if entries:
            await self._outbox.enqueue(entries)
        for submission, event in zip(submissions, events, strict=True):
            self._count(submission, event)
        self._metrics.received += len(events)
        bus = self._bus
        if bus is not None and bus.listening:  # nothing at all is built when no one watches
            rule_set = self._rules.current if self._rules is not None else None
            now = self._clock()
            for submission, event in zip(submissions, events, strict=True):
                bus.incoming(event, submission, rule_set, now)
        return submissions

    def _decide(self, event: Event) -> tuple[Submission, list[OutboxEntry]]:
        context = event.context
        decision = context.decision
        if decision is not None and decision.dropped:
            return Submission(dropped_by=decision.dropped_by), []
        try:
            payload = orjson.dumps(event.data)
        except TypeError:
            # Integers beyond 64 bits or broken text deep in a value: refuse, do not crash.
            return Submission(unstorable="the event holds a value that cannot be sent as JSON "
                              "(an integer out of range or invalid text)"), []
        route = context.route
        if route is None:
            raise RuntimeError("submit_many(prepared=True) with an event never prepared")
        if route.reasons:
            note = "; ".join(route.reasons)
            return (Submission(invalid=route.reasons),
                    [self._entry(event, payload, None, "invalid", note)])
        if not route.destinations and not route.refused and route.withheld:
            # Consent: not stored at all, only counted.
            return Submission(withheld_from=[d.name for d in route.withheld]), []
        if not route.destinations and not route.refused:
            # Kept, not silently dropped: a person can see which pixel ids arrive unconfigured.
            note = f"no destination accepts pixel {context.pixel_id}"
            if decision is not None and decision.routed_nowhere:
                note = "routing rules named no destination in common: " + ", ".join(
                    decision.matched)
            return Submission(), [self._entry(event, payload, None, "unrouted", note)]
        stored: dict[str, bytes] = {}  # per type: a row carries only its own type's identifiers

        def context_for(destination: Destination) -> bytes:
            kind = destination.settings.type
            if kind not in stored:
                stored[kind] = context.stored(kind)
            return stored[kind]

        rows = [self._entry(event, payload, d, context=context_for(d))
                for d in route.destinations]
        rows += [self._entry(event, payload, d, "invalid", "; ".join(reasons), context_for(d))
                 for d, reasons in route.refused]
        return Submission(destinations=[d.name for d in route.destinations],
                          refused_by=[d.name for d, _ in route.refused],
                          withheld_from=[d.name for d in route.withheld]), rows

    def _count(self, submission: Submission, event: Event) -> None:
        for name in submission.withheld_from:
            self._metrics.count(self._metrics.withheld, name)
        if submission.dropped_by:
            self._metrics.count(self._metrics.dropped, submission.dropped_by)
            self._drops.note(submission.dropped_by, event.context.source,
                             str(event.data.get("event_name", "")))
        elif submission.invalid:
            self._metrics.count(self._metrics.invalid, event.context.source)
        elif submission.destinations:
            for name in submission.destinations:
                self._metrics.count(self._metrics.enqueued, name)
            for name in submission.refused_by:
                self._metrics.count(self._metrics.refused, name)
        elif not submission.unstorable and not submission.withheld_from:
            self._metrics.unrouted.inc()

    @staticmethod
    def _entry(
        event: Event,
        payload: bytes,
        destination: Destination | None,
        state: str = "pending",
        note: str | None = None,
        context: bytes = b"",
    ) -> OutboxEntry:
        about = event.context
        if destination is None:
            pixel_id, test_event_code = about.pixel_id, about.test_event_code
        else:
            pixel_id, test_event_code = destination.address(about)
        return OutboxEntry(
            destination=destination.name if destination else "",
            pixel_id=pixel_id,
            test_event_code=test_event_code,
            event_name=str(event.data.get("event_name", "")),
            event_id=str(event.data.get("event_id", "")),
            event_time=_whole(event.data.get("event_time")),
            expires_at=destination.kind.expires(event.data) if destination else 0.0,
            payload=payload,
            state=state,
            note=note,
            request_fields=about.request_fields,
            rule_set=about.rule_set,
            context=context,
        )


def _union(groups: Iterable[list[str]]) -> list[str]:
    """Every reason once, in the order first given."""
    seen: dict[str, None] = {}
    for reasons in groups:
        for reason in reasons:
            seen.setdefault(reason)
    return list(seen)
