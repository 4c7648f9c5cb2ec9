"""Compile a rule's `when` into a tree of closures, once, at load.

    when:
      event_name: Purchase                        # field: value        -> equals
      custom_data.value: {gte: 100}               # field: {op: value}  -> that operator
      any: [{url.host: shop.example.com}, {context.geo.country: [FR, BE]}]   # field: [..] -> in
      not: {context.ip: {in_cidr: internal_networks}}

Several keys in one mapping (or a list of conditions) must all hold. A field that is absent
matches nothing but `exists: false`; so `not_equals`/`not_in` need the field present, while
`not: {...}` also matches when it is absent. Nothing here runs per event except the closures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..yamlsource import KeyPath
from .fields import Field, Predicate, Subject, field_candidates, resolve_field
from .lists import NamedList
from .operators import OPERATOR_HINTS, OPERATORS, compile_operator, guard_texts
from .plans import Guard
from .problems import Scope, did_you_mean, show

__all__ = ["Compiler", "Predicate", "conjuncts"]

COMBINATORS = ("all", "any", "not")
# Rule-level keys that end up inside `when` when the indentation slips.
RULE_KEYS = ("name", "enabled", "description", "when", "drop", "send_to_destination_only",
             "set", "remove", "rename_event")


@dataclass(frozen=True)
class Compiler:
    """Compiles the conditions of one rule, reporting problems in its scope."""

    scope: Scope
    lists: Mapping[str, NamedList]
    # Equality tests on text, by where they stand: guards for the index (plans.py).
    equalities: dict[KeyPath, Guard] = field(default_factory=dict)

    def condition(self, node: Any, path: KeyPath) -> Predicate | None:
        """A predicate for `node`, or None after reporting why it cannot be one."""
        if isinstance(node, list):
            if not node:
                self.scope.error(path, "R030", "an empty list of conditions; write at least "
                                 "one, or leave out `when` to match every event")
                return None
            return _all([self.condition(item, (*path, i)) for i, item in enumerate(node)])
        if not isinstance(node, dict) or not node:
            self.scope.error(path, "R030", "a condition is a mapping such as "
                             f"`event_name: Purchase`, got {show(node)}")
            return None
        parts = []
        for key, value in node.items():
            where = (*path, key)
            if key in COMBINATORS:
                parts.append(self._combinator(key, value, where))
            else:
                parts.append(self._field(key, value, where))
        return _all(parts)

    def _combinator(self, key: str, value: Any, path: KeyPath) -> Predicate | None:
        if key == "not":
            inner = self.condition(value, path)
            return None if inner is None else _negate(inner)
        if not isinstance(value, list) or not value:
            self.scope.error(path, "R030", f"`{key}` takes a list of conditions, e.g. "
                             f"{key}: [{{event_name: Lead}}, {{event_name: Purchase}}], "
                             f"got {show(value)}")
            return None
        preds = [self.condition(item, (*path, i)) for i, item in enumerate(value)]
        return _all(preds) if key == "all" else _any(preds)

    def _field(self, name: str, value: Any, path: KeyPath) -> Predicate | None:
        target = self._resolve(name, path)
        if target is None:
            return None
        if isinstance(value, dict):
            if not value:
                self.scope.error(path, "R031", f"no operator for {name}; write e.g. "
                                 f"{name}: {{equals: ...}}")
                return None
            return _all([self._operator(target, op, operand, (*path, op))
                         for op, operand in value.items()])
        if value is None:
            self.scope.error(path, "R033", f"{name}: no value; to match events without it, "
                             f"write {name}: {{exists: false}}")
            return None
        return self._operator(target, "in" if isinstance(value, list) else "equals", value, path)

    def _resolve(self, name: str, path: KeyPath) -> Field | None:
        if name in OPERATORS:
            self.scope.error(path, "R031", f"'{name}' is an operator; it goes under a field, "
                             f"e.g. event_name: {{{name}: ...}}", at_key=True)
            return None
        if name in RULE_KEYS:
            self.scope.error(path, "R011", f"'{name}' belongs to the rule, not inside `when`; "
                             "indent it at the level of `when`", at_key=True)
            return None
        field = resolve_field(name)
        if isinstance(field, str):
            if field.startswith("unknown field"):
                hint = did_you_mean(name, [*field_candidates(name), *COMBINATORS])
                field += f"{hint}; see docs/rules.md for the fields rules can read"
            self.scope.error(path, "R020", field, at_key=True)
            return None
        return field

    def _operator(self, field: Field, op: str, operand: Any, path: KeyPath) -> Predicate | None:
        if op not in OPERATORS:
            hint = did_you_mean(op, OPERATORS, OPERATOR_HINTS)
            self.scope.error(path, "R031", f"unknown operator '{op}' for {field.path}{hint}; "
                             f"operators: {', '.join(OPERATORS)}", at_key=True)
            return None
        if field.hashed and op != "exists":
            key = field.path.split(".", 1)[1]
            self.scope.error(path, "R021", f"{field.path} can only be tested with "
                             "`exists: true` or `exists: false`: user_data values are hashed "
                             f"before rules run, so '{op}' could never match a clear value; "
                             f"{_CLEAR_ALTERNATIVES.get(key, _CLEAR_DEFAULT)}")
            return None
        pred = compile_operator(field, op, operand, path, self.scope, self.lists)
        if pred is not None and op in ("equals", "in", "in_list"):
            texts = guard_texts(field, op, operand, path, self.scope, self.lists)
            if texts is not None:
                self.equalities[path] = (field, texts)
        return pred


def conjuncts(when: Any, path: KeyPath) -> list[KeyPath]:
    """Where the tests stand that must all hold for `when` to hold (not under any/not)."""
    if isinstance(when, list):
        return [found for i, item in enumerate(when) for found in conjuncts(item, (*path, i))]
    if not isinstance(when, dict):
        return []
    found: list[KeyPath] = []
    for key, value in when.items():
        if key == "all" and isinstance(value, list):
            found += conjuncts(value, (*path, key))
        elif key not in COMBINATORS:
            found.append((*path, key))
            if isinstance(value, dict):
                found += [(*path, key, op) for op in value]
    return found


_CLEAR_DEFAULT = "compare a clear field such as context.geo.country instead"
_CLEAR_ALTERNATIVES = {
    "client_ip_address": "use context.ip instead (e.g. context.ip: {in_cidr: [10.0.0.0/8]})",
    "client_user_agent": "use context.ua.browser, context.ua.os or context.ua.is_bot instead",
    "country": "use context.geo.country instead",
    "ct": "use context.geo.city instead",
    "st": "use context.geo.region instead",
    "zp": "use context.geo.postal instead",
}


def _all(preds: list[Predicate | None]) -> Predicate | None:
    if any(pred is None for pred in preds):
        return None
    checks: tuple[Predicate, ...] = tuple(pred for pred in preds if pred is not None)
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks

        def both(subject: Subject) -> bool:
            return first(subject) and second(subject)

        return both

    def every(subject: Subject) -> bool:
        for check in checks:
            if not check(subject):
                return False
        return True

    return every


def _any(preds: list[Predicate | None]) -> Predicate | None:
    if any(pred is None for pred in preds):
        return None
    checks: tuple[Predicate, ...] = tuple(pred for pred in preds if pred is not None)
    if len(checks) == 1:
        return checks[0]

    def some(subject: Subject) -> bool:
        for check in checks:
            if check(subject):
                return True
        return False

    return some


def _negate(pred: Predicate) -> Predicate:
    def negated(subject: Subject) -> bool:
        return not pred(subject)

    return negated
