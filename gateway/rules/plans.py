"""Which rules can possibly match an event, decided from a few field values, not rule by rule.

Many rules start with an equality test: `event_name: Purchase`, `url.path: /landing/7`,
`context.geo.country: {in_list: blocked_countries}`. Such a test is a guard: if the event's
value is not among the rule's texts, the rule cannot match, so there is no need to ask it.
The index reads each guarded field once per event (event_name always; other fields when they
guard at least two rules), turns the values into a key (a value no rule names counts as
"other") and keeps, per key, the plan: the enabled rules in order, minus those whose guards
exclude the key. Plans are built on first use and remembered (bounded).

A rule still evaluates its whole condition, guards included: the index only skips rules that
could not match. After a rule that transforms the event matches, the key is read again; if it
changed (a rename, say), evaluation continues after that rule in the new key's plan.
"""

from __future__ import annotations

from collections.abc import Sequence

from .actions import Transform
from .fields import Field, Getter, Predicate, Subject

__all__ = ["Guard", "Index", "Plan", "Step"]

Guard = tuple[Field, frozenset[str]]  # the rule matches only if the field's text is in the set
# (position, rule name, when, transforms, only, drop): tuples unpack faster than attributes.
Step = tuple[int, str, "Predicate | None", tuple[Transform, ...], "frozenset[str] | None", bool]
Plan = tuple[Step, ...]
Key = tuple[str | None, ...]

_MEMO_SIZE = 4096


class Index:
    def __init__(self, steps: Sequence[Step], guards: Sequence[tuple[Guard, ...]]) -> None:
        counts: dict[str, int] = {}
        fields: dict[str, Field] = {}
        for rule_guards in guards:
            for field in {guard[0].path: guard[0] for guard in rule_guards}.values():
                counts[field.path] = counts.get(field.path, 0) + 1
                fields[field.path] = field
        indexed = [path for path in fields if path == "event_name" or counts[path] >= 2]
        self._positions = {path: i for i, path in enumerate(indexed)}
        self._getters: tuple[tuple[Getter, frozenset[str]], ...] = tuple(
            (fields[path].get, frozenset().union(
                *(texts for rule_guards in guards for f, texts in rule_guards if f.path == path)))
            for path in indexed
        )
        self._steps = tuple(steps)
        # Per step: (field position, allowed texts) for each indexed guard.
        self._needs = tuple(self._requirements(rule_guards) for rule_guards in guards)
        self._memo: dict[Key, Plan] = {}

    def _requirements(self, rule_guards: tuple[Guard, ...]) -> tuple[tuple[int, frozenset[str]],
                                                                     ...]:
        allowed: dict[int, frozenset[str]] = {}
        for field, texts in rule_guards:
            position = self._positions.get(field.path)
            if position is not None:
                allowed[position] = allowed[position] & texts if position in allowed else texts
        return tuple(allowed.items())

    def key(self, subject: Subject) -> Key:
        key: list[str | None] = []
        for get, known in self._getters:
            value = get(subject)
            key.append(value if isinstance(value, str) and value in known else None)
        return tuple(key)

    def plan(self, key: Key) -> Plan:
        plan = self._memo.get(key)
        if plan is None:
            plan = tuple(
                step for step, needs in zip(self._steps, self._needs, strict=True)
                if all(key[position] in texts for position, texts in needs)
            )
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = plan
        return plan

    @property
    def steps(self) -> Plan:
        return self._steps


def after(plan: Plan, position: int) -> Plan:
    """The steps of `plan` that come after the rule at `position`."""
    for index, step in enumerate(plan):
        if step[0] > position:
            return plan[index:]
    return ()

