"""What happens now, for whoever watches (the console's live events): a small in-process bus.

The pipeline tells each incoming event once its fate is known (routed, dropped, refused,
withheld), ingest each request it refuses, and the relay each outgoing batch with the
platform's answer. Publishers ask `listening` first and build nothing when no one watches: the
hit path pays one attribute read. Each subscriber has a bounded queue: a slow one loses events
(and is told how many at its next read), it never makes ingest wait.

What is told is safe to show an operator: names, ids, counts, reasons, rule names; personal
data never (no user_data values, IPs, URLs or user agents), nor tokens or keys. Each event
names the process that saw it (`worker`, `node`, `process`).

Across processes and nodes (gateway/whole/feed.py): while someone watches in another process,
this process's events also go to a `forward_to` sink (which counts as listening), and events
other processes saw come in through `deliver`, to this process's subscribers only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Event
    from .pipeline import Submission
    from .rules import RuleSet
    from .storage import ClaimedRow

__all__ = ["QUEUE_SIZE", "EventBus", "Subscription"]

QUEUE_SIZE = 1000  # events held for one subscriber that reads too slowly
_TEXT = 200  # a sender's text (event name, id, reason) is cut to this length
_ITEMS = 50  # items of a list shown per event


class Subscription:
    """One watcher's bounded queue: what does not fit is counted as lost, never waited for."""

    def __init__(self, size: int) -> None:
        self._queue: deque[dict[str, Any]] = deque()
        self._size = size
        self._ready = asyncio.Event()
        self.lost = 0
        self.closed = False  # the bus closed (shutdown): `get` answers None at once

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def put(self, item: dict[str, Any]) -> None:
        if len(self._queue) >= self._size:
            self.lost += 1
            return
        self._queue.append(item)
        self._ready.set()

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event, in order; after the last one held before an overflow, a notice of
        how many were lost. None after `timeout` seconds without one, or once closed."""
        while True:
            if self._queue:
                return self._queue.popleft()
            if self.lost:
                lost, self.lost = self.lost, 0
                return {"kind": "lost", "count": lost}
            if self.closed:
                return None
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None


class EventBus:
    def __init__(self, worker: int = 0, queue_size: int = QUEUE_SIZE) -> None:
        self._subscribers: list[Subscription] = []
        self._queue_size = queue_size
        self._sink: Callable[[dict[str, Any]], None] | None = None
        self.listening = False  # read by publishers before they build anything
        self.origin: dict[str, Any] = {"worker": worker}  # added to every event told here
        self.watched = asyncio.Event()  # set while this process has subscribers

    def subscribe(self, size: int | None = None) -> Subscription:
        subscription = Subscription(size or self._queue_size)
        self._subscribers.append(subscription)
        self._listening()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)
        self._listening()

    def forward_to(self, sink: Callable[[dict[str, Any]], None] | None) -> None:
        """Also give every event told here to `sink` (None: stop): watchers elsewhere."""
        self._sink = sink
        self._listening()

    def _listening(self) -> None:
        self.listening = bool(self._subscribers) or self._sink is not None
        if self._subscribers:
            self.watched.set()
        else:
            self.watched.clear()

    def deliver(self, item: dict[str, Any]) -> None:
        """An event another process saw, for this process's subscribers only."""
        for subscription in self._subscribers:
            subscription.put(item)

    def close(self) -> None:
        """End every subscription (at shutdown)."""
        for subscription in self._subscribers:
            subscription.close()

    def publish(self, item: dict[str, Any]) -> None:
        item.update(self.origin)
        for subscription in self._subscribers:
            subscription.put(item)
        if self._sink is not None:
            self._sink(item)

    # -- what is told --------------------------------------------------------------------------
    def incoming(self, event: Event, submission: Submission, rule_set: RuleSet | None,
                 at: float) -> None:
        """One event that reached the pipeline, and what became of it."""
        context, data = event.context, event.data
        decision = context.decision
        route = context.route
        rules = []
        if decision is not None and decision.matched:
            by_name = {rule.name: rule for rule in rule_set.rules} if rule_set else {}
            for name in decision.matched:
                rule = by_name.get(name)
                did = []
                if rule is not None:
                    if rule.transforms:
                        did.append("edited the event")
                    if rule.only is not None:
                        did.append("routed to " + (", ".join(sorted(rule.only)) or "none"))
                    if rule.drop:
                        did.append("dropped it")
                rules.append({"rule": name, "did": did})
        if submission.dropped_by:
            outcome = "dropped"
        elif submission.unstorable:
            outcome = "refused"
        elif submission.invalid:
            outcome = "invalid"
        elif submission.destinations:
            outcome = "routed"
        elif submission.withheld_from:
            outcome = "withheld"
        else:
            outcome = "unrouted"
        refused = {}
        if route is not None:
            refused = {d.name: reasons for d, reasons in route.refused}
        user_data = data.get("user_data")
        self.publish({
            "kind": "incoming",
            "at": at,
            "source": context.source,
            "pixel": context.pixel_id,
            "event_name": _text(data.get("event_name")),
            "event_id": _text(data.get("event_id")),
            "test_event_code": _text(context.test_event_code) or None,
            # which identifiers came (names only: their values are personal data)
            "user_data": _texts(sorted(user_data)) if isinstance(user_data, dict) else [],
            "rule_set": context.rule_set or None,
            "rules": rules,
            "outcome": outcome,
            "destinations": submission.destinations,
            "refused_by": {name: _texts(reasons) for name, reasons in refused.items()},
            "withheld_from": submission.withheld_from,
            "dropped_by": submission.dropped_by,
            "reasons": [_text(r) for r in submission.invalid]
            + ([submission.unstorable] if submission.unstorable else []),
        })

    def refused(self, source: str, reason: str, at: float, pixel: str = "") -> None:
        """A request refused before it became an event (unreadable, no valid key, ...)."""
        self.publish({"kind": "incoming", "at": at, "source": source, "pixel": pixel or None,
                      "outcome": "refused", "reasons": [_text(reason)], "destinations": []})

    def outgoing(self, destination: str, outcome: str, rows: Sequence[ClaimedRow],
                 request: str, answer: str, at: float) -> None:
        """One batch a relay worker sent (or would have, in a dry run) and the answer."""
        self.publish({
            "kind": "outgoing",
            "at": at,
            "destination": destination,
            "outcome": outcome,
            "events": len(rows),
            "event_names": _texts(sorted({row.event_name for row in rows})),
            "event_ids": [_text(row.event_id) for row in rows[:20]],
            "request": request,
            "answer": answer,
        })


def _text(value: object) -> str:
    return value[:_TEXT] if isinstance(value, str) else ""


def _texts(values: Sequence[object]) -> list[str]:
    """At most _ITEMS texts, each cut to _TEXT characters (names and reasons a sender chose)."""
    return [_text(value) for value in values[:_ITEMS]]
