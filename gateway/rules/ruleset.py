"""A loaded rule set, what it decides for one event, and counters per rule.

`RuleSet.apply(event)` runs the enabled rules in order (file-name order, then order in the
file). For each rule whose `when` matches: `set`, then `remove`, then `rename_event` edit the
event's data; `send_to_destination_only` narrows where it goes (several routing rules
intersect: an event routed to [a, b] and then to [b, c] goes to b only, and to [a] then [c] goes
nowhere); `drop: true` ends processing, later rules do not run. Later rules see the event as
earlier rules left it. `apply` never raises.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..model import Decision, Event
from .actions import Transform
from .conditions import Predicate
from .fields import Subject
from .plans import Guard, Index, Plan, after

__all__ = ["EMPTY_HASH", "Rule", "RuleSet", "RuleStats", "rule_set_hash"]


def rule_set_hash(files: Sequence[tuple[str, bytes]]) -> str:
    """12 hex characters of SHA-256 over every (file name, content), in name order."""
    digest = hashlib.sha256()
    for name, content in sorted(files):
        encoded = name.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
        digest.update(len(content).to_bytes(8, "big") + content)
    return digest.hexdigest()[:12]


EMPTY_HASH = rule_set_hash([])


@dataclass(frozen=True, eq=False)
class Rule:
    name: str
    when: Predicate | None = None  # None: every event
    transforms: tuple[Transform, ...] = ()  # set, remove, rename_event, in that order
    only: frozenset[str] | None = None  # send_to_destination_only
    drop: bool = False
    enabled: bool = True
    guards: tuple[Guard, ...] = ()  # equality tests `when` implies (speed only: plans.py)


class RuleStats:
    """Counts per rule name (kept across reloads: one instance for the process)."""

    def __init__(self) -> None:
        self.events = 0
        self.matched: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.routed: Counter[str] = Counter()
        self.routed_nowhere = 0  # events whose routing rules left no destination

    def rows(self) -> Iterator[tuple[str, int, int, int]]:
        """(rule name, matched, dropped, routed) for every rule that matched at least once."""
        for name in sorted(self.matched):
            yield name, self.matched[name], self.dropped[name], self.routed[name]


@dataclass(frozen=True)
class RuleSet:
    hash: str = EMPTY_HASH
    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = ()
    _index: Index = field(init=False, repr=False, compare=False)
    _routers: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        active = [rule for rule in self.rules if rule.enabled]
        steps = [(position, rule.name, rule.when, rule.transforms, rule.only, rule.drop)
                 for position, rule in enumerate(active)]
        object.__setattr__(self, "_index", Index(steps, [rule.guards for rule in active]))
        object.__setattr__(self, "_routers",
                           frozenset(rule.name for rule in active if rule.only is not None))

    def apply(self, event: Event, stats: RuleStats | None = None) -> Decision:
        """Run the enabled rules on `event` (editing its data); say what they decided."""
        decision = Decision()
        index = self._index
        if index.steps:
            subject = Subject(event)
            key = index.key(subject)
            steps = index.plan(key)
            matched = decision.matched
            while steps:
                rest: Plan = ()
                for position, rule, when, transforms, only, drop in steps:
                    if when is not None and not when(subject):
                        continue
                    matched.append(rule)
                    for transform in transforms:
                        transform(subject)
                    if only is not None:
                        decision.only = only if decision.only is None else decision.only & only
                    if drop:
                        decision.dropped_by = rule
                        break
                    if transforms:
                        changed = index.key(subject)
                        if changed != key:
                            # The event changed under the index (a rename, say): continue
                            # after this rule with the rules that can match it now.
                            key = changed
                            rest = after(index.plan(key), position)
                            break
                steps = rest
        if stats is not None:
            self._count(decision, stats)
        return decision

    def _count(self, decision: Decision, stats: RuleStats) -> None:
        stats.events += 1
        if not decision.matched:
            return
        stats.matched.update(decision.matched)
        if decision.dropped_by is not None:
            stats.dropped[decision.dropped_by] += 1
        if decision.only is not None:
            stats.routed.update(name for name in decision.matched if name in self._routers)
            if not decision.only and decision.dropped_by is None:
                stats.routed_nowhere += 1

