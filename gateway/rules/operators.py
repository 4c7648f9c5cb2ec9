"""The condition operators: each turns (field, written operand) into a predicate, once, at load.

Every predicate reads the field with its getter and tests the value without raising: a value of
the wrong type (a list where text was expected, text that is not a number for `gt`) simply does
not match. Regular expressions are RE2 (linear time: no pattern can hang the gateway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from operator import eq, ge, gt, is_, is_not, le, lt
from typing import Any

import re2  # type: ignore[import-untyped]

from ..yamlsource import KeyPath
from .fields import Field, Predicate, bind
from .lists import NamedList
from .operands import (
    Network,
    Operand,
    OperandError,
    coerce,
    ip_key,
    member_test,
    parse_network,
    to_number,
)
from .problems import Scope, did_you_mean, show, written

__all__ = ["OPERATORS", "OPERATOR_HINTS", "compile_operator", "guard_texts"]

OPERATORS = (
    "equals", "not_equals", "in", "not_in", "in_list", "not_in_list", "contains",
    "starts_with", "ends_with", "matches", "exists", "gt", "gte", "lt", "lte", "in_cidr",
    "not_in_cidr",
)
OPERATOR_HINTS = {
    "eq": "equals", "=": "equals", "==": "equals", "is": "equals", "equal": "equals",
    "ne": "not_equals", "!=": "not_equals", "neq": "not_equals", "is_not": "not_equals",
    "one_of": "in", "any_of": "in", "none_of": "not_in", "regex": "matches",
    "match": "matches", "regexp": "matches", "like": "contains", "includes": "contains",
    ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "cidr": "in_cidr", "list": "in_list",
    "present": "exists", "prefix": "starts_with", "suffix": "ends_with",
}
_FOR_BOOL = ("equals", "not_equals", "in", "not_in", "exists")
_FOR_NUMBER = ("equals", "not_equals", "in", "not_in", "in_list", "not_in_list", "exists",
               "gt", "gte", "lt", "lte")
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {"gt": gt, "gte": ge, "lt": lt,
                                                           "lte": le}
_MEMO_SIZE = 4096  # remembered answers per regular expression
_MEMO_LENGTH = 512  # longer values are not remembered
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


class _Bad(OperandError):
    def __init__(self, message: str, code: str = "R032") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class _Args:
    field: Field
    op: str
    operand: Any
    path: KeyPath
    scope: Scope
    lists: Mapping[str, NamedList]

    def one(self) -> Operand:
        return coerce(self.field, self.operand, written(self.scope, self.path, self.operand))

    def many(self) -> list[Operand]:
        if not isinstance(self.operand, list) or not self.operand:
            named = isinstance(self.operand, str) and self.operand in self.lists
            tip = (f"; to use the named list write {self.op}_list: {self.operand}" if named
                   else "")
            raise _Bad(f"needs a list of values such as [a, b], got {show(self.operand)}{tip}")
        return [self._item(value, (*self.path, i)) for i, value in enumerate(self.operand)]

    def one_or_many(self) -> list[Operand]:
        return self.many() if isinstance(self.operand, list) else [self.one()]

    def named(self) -> NamedList:
        if not isinstance(self.operand, str) or self.operand not in self.lists:
            hint = did_you_mean(str(self.operand), self.lists)
            known = ", ".join(sorted(self.lists)) or "none yet; define one under `lists:`"
            raise _Bad(f"no list named {show(self.operand)}{hint}; lists: {known}", "R036")
        return self.lists[self.operand]

    def from_list(self) -> list[Operand]:
        named = self.named()
        operands = []
        for path, value in named.items:
            try:
                operands.append(coerce(self.field, value, written(named.scope, path, value)))
            except OperandError as exc:
                raise _Bad(f"list '{named.name}' holds {show(value)}: {exc}") from None
        return operands

    def _item(self, value: Any, path: KeyPath) -> Operand:
        return coerce(self.field, value, written(self.scope, path, value))


def compile_operator(
    field: Field, op: str, operand: Any, path: KeyPath, scope: Scope,
    lists: Mapping[str, NamedList],
) -> Predicate | None:
    """The predicate for `field: {op: operand}`, or None after reporting what is wrong."""
    allowed = {"bool": _FOR_BOOL, "number": _FOR_NUMBER}.get(field.kind, OPERATORS)
    if op not in allowed:
        what = "true or false" if field.kind == "bool" else "a number"
        scope.error(path, "R032", f"{field.path} is {what}, so '{op}' does not apply; use one "
                    f"of {', '.join(allowed)}", at_key=True)
        return None
    label = f"{field.path} {op}" if path[-1] == op else field.path  # as the person wrote it
    try:
        return _BUILDERS[op](_Args(field, op, operand, path, scope, lists))
    except _Bad as exc:
        scope.error(path, exc.code, f"{label}: {exc}")
    except OperandError as exc:
        scope.error(path, "R032", f"{label}: {exc}")
    return None


def guard_texts(
    field: Field, op: str, operand: Any, path: KeyPath, scope: Scope,
    lists: Mapping[str, NamedList],
) -> frozenset[str] | None:
    """The texts a (valid) `equals` / `in` / `in_list` test accepts, if they are all texts."""
    a = _Args(field, op, operand, path, scope, lists)
    try:
        operands = {"equals": lambda: [a.one()], "in": a.many, "in_list": a.from_list}[op]()
    except (KeyError, OperandError):
        return None
    if all(type(operand.value) is str for operand in operands):
        return frozenset(operand.text for operand in operands)
    return None


def _membership(a: _Args, operands: list[Operand], *, negate: bool = False) -> Predicate:
    """`equals` / `in` (or, negated, `not_equals` / `not_in`: the field must be present)."""
    test = member_test(operands)
    if negate:
        return bind(a.field, lambda value: value is not None and not test(value))
    if len(operands) == 1 and type(operands[0].value) is str:
        return bind(a.field, partial(eq, operands[0].text))  # C-level: no Python frame
    if len(operands) == 1 and type(operands[0].value) is bool:
        return bind(a.field, partial(is_, operands[0].value))
    return bind(a.field, test)


def _equals(a: _Args) -> Predicate:
    return _membership(a, [a.one()])


def _not_equals(a: _Args) -> Predicate:
    return _membership(a, [a.one()], negate=True)


def _in(a: _Args) -> Predicate:
    return _membership(a, a.many())


def _not_in(a: _Args) -> Predicate:
    return _membership(a, a.many(), negate=True)


def _in_list(a: _Args) -> Predicate:
    return _membership(a, a.from_list())


def _not_in_list(a: _Args) -> Predicate:
    return _membership(a, a.from_list(), negate=True)


def _contains(a: _Args) -> Predicate:
    operands = a.one_or_many()
    texts = tuple(operand.text for operand in operands)
    in_list = member_test(operands)

    def contains(value: Any) -> bool:
        if type(value) is str:
            for text in texts:
                if text in value:
                    return True
        elif type(value) is list:  # e.g. custom_data.content_ids
            for item in value:
                if in_list(item):
                    return True
        return False

    return bind(a.field, contains)


def _affix(a: _Args) -> Predicate:
    texts = tuple(operand.text for operand in a.one_or_many())
    if a.op == "starts_with":
        return bind(a.field, lambda value: type(value) is str and value.startswith(texts))
    return bind(a.field, lambda value: type(value) is str and value.endswith(texts))


def _matches(a: _Args) -> Predicate:
    if not isinstance(a.operand, str):
        raise _Bad(f"a regular expression is text; put it in quotes, got {show(a.operand)}")
    try:
        re2.compile(a.operand, _RE2_OPTIONS)  # for the reason, should the pattern be wrong
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise _Bad(f"invalid regular expression {a.operand!r}: {reason}; RE2 syntax, no "
                   "backreferences or lookarounds (docs/rules.md)", "R034") from None
    # A one-pattern RE2::Set answers "does it match?" without building a match object: about
    # twice as fast as search(). Answers are remembered per value: paths and hosts repeat.
    pattern = re2.Set.SearchSet(_RE2_OPTIONS)
    pattern.Add(a.operand)
    pattern.Compile()
    match = pattern.Match
    seen: dict[str, bool] = {}

    def matches(value: Any) -> bool:
        if type(value) is not str:
            return False
        found = seen.get(value)
        if found is None:
            try:
                found = match(value) is not None
            except UnicodeError:  # text that is not valid Unicode (lone surrogates)
                found = False
            if len(value) <= _MEMO_LENGTH:
                if len(seen) >= _MEMO_SIZE:
                    seen.clear()
                seen[value] = found
        return found

    return bind(a.field, matches)


def _exists(a: _Args) -> Predicate:
    if not isinstance(a.operand, bool):
        raise _Bad(f"is true or false, got {show(a.operand)}")
    return bind(a.field, partial(is_not if a.operand else is_, None))


def _compare(a: _Args) -> Predicate:
    limit = a.operand
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit != limit:
        raise _Bad(f"compares numbers; write a number without quotes, got {show(limit)}")
    compare = _COMPARISONS[a.op]

    def in_range(value: Any) -> bool:
        number = to_number(value)
        return number is not None and compare(number, limit)

    return bind(a.field, in_range)


def _networks(a: _Args) -> tuple[Network, ...]:
    if isinstance(a.operand, str) and a.operand in a.lists:
        networks = a.lists[a.operand].networks()
        if networks is None:
            raise _Bad(f"list '{a.operand}' has entries that are not IP networks (reported "
                       "on the list)", "R035")
        return networks
    values = a.operand if isinstance(a.operand, list) else [a.operand]
    if not values:
        raise _Bad("needs CIDRs such as [10.0.0.0/8] or the name of a list", "R035")
    parsed = []
    for value in values:
        network = parse_network(value) if isinstance(value, str) else None
        if network is None:
            hint = did_you_mean(str(value), a.lists) if isinstance(value, str) else ""
            raise _Bad(f"{show(value)} is neither an IP network (like 10.0.0.0/8) nor the "
                       f"name of a list{hint}", "R035" if not hint else "R036")
        parsed.append(network)
    return tuple(parsed)


def _cidr(a: _Args) -> Predicate:
    networks = _networks(a)
    v4 = tuple((mask, net) for version, mask, net in networks if version == 4)
    v6 = tuple((mask, net) for version, mask, net in networks if version == 6)
    inside = a.op == "in_cidr"

    def in_networks(value: Any) -> bool:
        if type(value) is not str:
            return False
        key = ip_key(value)
        if key is None:
            return False
        address = key[1]
        for mask, net in v4 if key[0] == 4 else v6:
            if address & mask == net:
                return inside
        return not inside

    return bind(a.field, in_networks)


_BUILDERS: dict[str, Callable[[_Args], Predicate]] = {
    "equals": _equals, "not_equals": _not_equals, "in": _in, "not_in": _not_in,
    "in_list": _in_list, "not_in_list": _not_in_list, "contains": _contains,
    "starts_with": _affix, "ends_with": _affix, "matches": _matches, "exists": _exists,
    "gt": _compare, "gte": _compare, "lt": _compare, "lte": _compare, "in_cidr": _cidr,
    "not_in_cidr": _cidr,
}
