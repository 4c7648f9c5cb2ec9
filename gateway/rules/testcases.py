"""Read rule-test files (`rules/tests/*.yaml`) into cases, reporting every problem located.

    cases:
      - name: a crawler is dropped
        event:                                   # a partial event: the rest gets defaults
          user_data: {client_user_agent: "Mozilla/5.0 (compatible; Googlebot/2.1)"}
          context: {ip: 10.1.2.3, pixel_id: "123", source: browser, geo: {country: FR}}
        expect: {dropped: true}                  # and/or destinations: [main], fields: {...},
                                                 # matched: [rule names]
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import PIXEL_ID
from ..problems import Problem
from ..yamlsource import KeyPath
from .fields import resolve_field
from .loader import read_yaml_file
from .operands import OperandError, coerce, member_test
from .problems import RuleError, Scope, did_you_mean, show, sort_problems, written

__all__ = ["Case", "ExpectedField", "read_cases"]

EVENT_KEYS = (
    "event_name", "event_time", "event_id", "event_source_url", "referrer_url",
    "action_source", "opt_out", "user_data", "custom_data", "data_processing_options",
    "data_processing_options_country", "data_processing_options_state", "app_data",
    "original_event_data", "attribution_data", "messaging_channel", "context",
)
CONTEXT_KEYS = ("ip", "pixel_id", "source", "geo")
GEO_KEYS = ("country", "region", "city", "postal")
EXPECT_KEYS = ("dropped", "destinations", "fields", "matched")


@dataclass(frozen=True)
class ExpectedField:
    path: str
    get: Callable[[Any], Any]  # Subject -> value
    test: Callable[[Any], bool]
    shown: str  # the expected value, for messages


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    line: int
    event: dict[str, Any]
    context: dict[str, Any]
    dropped: bool | None = None
    destinations: tuple[str, ...] | None = None
    fields: tuple[ExpectedField, ...] = ()
    matched: tuple[str, ...] | None = None


def read_cases(tests_path: Path, destinations: Collection[str],
               rule_names: Collection[str]) -> list[Case]:
    """Every case of every `*.yaml` in `tests_path` (absent folder: none); RuleError if broken."""
    if not tests_path.is_dir():
        return []
    sink: list[Problem] = []
    cases: list[Case] = []
    prefix = f"{tests_path.resolve().parent.name}/{tests_path.name}"
    for file in sorted(tests_path.glob("*.yaml")):
        if file.name.startswith("."):
            continue
        loaded = read_yaml_file(file, f"{prefix}/{file.name}", sink)
        if loaded is not None:
            _, data, marks = loaded
            reader = _Reader(Scope(marks, sink), destinations, rule_names)
            cases.extend(reader.file(data))
    if sink:
        raise RuleError(sort_problems(sink))
    return cases


@dataclass(frozen=True)
class _Reader:
    scope: Scope
    destinations: Collection[str]
    rule_names: Collection[str]

    def file(self, data: Any) -> list[Case]:
        if data is None:
            return []
        if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
            self.scope.error((), "R060", "a rule-test file has `cases:`, a list of "
                             "{name, event, expect}")
            return []
        self._unknown(data, (), ("version", "cases"), "R060", "a rule-test file")
        names: set[str] = set()
        cases = []
        for index, node in enumerate(data["cases"]):
            case = self._case(node, ("cases", index), names)
            if case is not None:
                cases.append(case)
        return cases

    def _unknown(self, node: dict[str, Any], path: KeyPath, known: tuple[str, ...],
                 code: str, what: str, scope: Scope | None = None) -> None:
        for key in node:
            if key not in known:
                hint = did_you_mean(key, known)
                (scope or self.scope).error((*path, key), code, f"unknown key '{key}'{hint}; "
                                            f"{what} has {', '.join(known)}", at_key=True)

    def _case(self, node: Any, path: KeyPath, names: set[str]) -> Case | None:
        label = f"#{int(path[-1]) + 1}"
        if not isinstance(node, dict):
            self.scope.about(f"case '{label}'").error(path, "R061", "each case is a mapping "
                                                      "with name, event and expect")
            return None
        raw_name = node.get("name")
        name = raw_name.strip() if isinstance(raw_name, str) else ""
        scope = self.scope.about(f"case '{name or label}'")
        start = scope.count
        if not name:
            scope.error(path, "R061", "every case needs a name (text), e.g. `name: bots are "
                        "dropped`")
        elif name in names:
            scope.error((*path, "name"), "R061", "another case in this file has this name; "
                        "rename one")
        names.add(name)
        self._unknown(node, path, ("name", "event", "expect"), "R061", "a case", scope)
        event, context = self._event(node.get("event"), (*path, "event"), scope)
        case = Case(file=scope.marks.filename, name=name or label,
                    line=scope.marks.position(path).line, event=event, context=context)
        case = self._expect(node.get("expect"), (*path, "expect"), scope, case)
        return case if scope.count == start else None

    def _event(self, node: Any, path: KeyPath,
               scope: Scope) -> tuple[dict[str, Any], dict[str, Any]]:
        if node is None:
            return {}, {}
        if not isinstance(node, dict):
            scope.error(path, "R062", f"event is a mapping of event fields, got {show(node)}")
            return {}, {}
        self._unknown(node, path, EVENT_KEYS, "R062", "an event", scope)
        for key in ("user_data", "custom_data"):
            if key in node and not isinstance(node[key], dict):
                scope.error((*path, key), "R062", f"{key} is a mapping, got {show(node[key])}")
        event = {key: value for key, value in node.items() if key != "context"}
        return event, self._context(node.get("context"), (*path, "context"), scope)

    def _context(self, node: Any, path: KeyPath, scope: Scope) -> dict[str, Any]:
        if node is None:
            return {}
        if not isinstance(node, dict):
            scope.error(path, "R064", f"context is a mapping such as {{ip: 10.0.0.1}}, got "
                        f"{show(node)}")
            return {}
        self._unknown(node, path, CONTEXT_KEYS, "R064", "context", scope)
        context: dict[str, Any] = {
            key: written(scope, (*path, key), value) for key, value in node.items()
            if key in ("ip", "pixel_id", "source") and isinstance(value, str | int)
        }
        if "ip" in node and not _is_ip(context.get("ip")):
            scope.error((*path, "ip"), "R064", f"ip is an IP address such as 203.0.113.10, "
                        f"got {show(node['ip'])}")
        if "source" in node and context.get("source") not in ("browser", "server"):
            scope.error((*path, "source"), "R064", "source is browser or server, got "
                        + show(node["source"]))
        if "pixel_id" in node and not PIXEL_ID.fullmatch(str(context.get("pixel_id", ""))):
            scope.error((*path, "pixel_id"), "R064", "pixel_id is the pixel's numeric id, got "
                        + show(node["pixel_id"]))
        geo = node.get("geo")
        if geo is not None:
            if not isinstance(geo, dict):
                scope.error((*path, "geo"), "R064", f"geo is a mapping such as {{country: FR}}, "
                            f"got {show(geo)}")
            else:
                self._unknown(geo, (*path, "geo"), GEO_KEYS, "R064", "geo", scope)
                context["geo"] = {key: written(scope, (*path, "geo", key), value)
                                  for key, value in geo.items() if key in GEO_KEYS}
        return context

    def _expect(self, node: Any, path: KeyPath, scope: Scope, case: Case) -> Case:
        if not isinstance(node, dict) or not node:
            scope.error(path, "R063", "expect says what should happen, e.g. {dropped: true}, "
                        "{destinations: [main]} or {fields: {event_name: Purchase}}")
            return case
        self._unknown(node, path, EXPECT_KEYS, "R063", "expect", scope)
        dropped = node.get("dropped")
        if "dropped" in node and not isinstance(dropped, bool):
            scope.error((*path, "dropped"), "R063", f"dropped is true or false, got "
                        f"{show(dropped)}")
        return Case(
            file=case.file, name=case.name, line=case.line, event=case.event,
            context=case.context, dropped=dropped if isinstance(dropped, bool) else None,
            destinations=self._names(node, "destinations", path, scope, self.destinations),
            fields=self._fields(node.get("fields"), (*path, "fields"), scope),
            matched=self._names(node, "matched", path, scope, self.rule_names),
        )

    def _names(self, node: dict[str, Any], key: str, path: KeyPath, scope: Scope,
               known: Collection[str]) -> tuple[str, ...] | None:
        if key not in node:
            return None
        values = node[key]
        what = "destination" if key == "destinations" else "rule"
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            scope.error((*path, key), "R063", f"{key} is a list of {what} names ([] for none), "
                        f"got {show(values)}")
            return None
        for index, value in enumerate(values):
            if value not in known:
                hint = did_you_mean(value, known)
                scope.error((*path, key, index), "R063", f"no {what} named '{value}'{hint}; "
                            f"known: {', '.join(sorted(known)) or 'none'}")
        return tuple(values)

    def _fields(self, node: Any, path: KeyPath, scope: Scope) -> tuple[ExpectedField, ...]:
        if node is None:
            return ()
        if not isinstance(node, dict) or not node:
            scope.error(path, "R063", "fields maps field names to expected values, e.g. "
                        f"{{event_name: Purchase}}, got {show(node)}")
            return ()
        expected = []
        for name, value in node.items():
            field = resolve_field(name)
            if isinstance(field, str):
                scope.error((*path, name), "R063", field, at_key=True)
                continue
            where = (*path, name)
            if value is None:
                expected.append(ExpectedField(name, field.get, _absent, "absent"))
            elif isinstance(value, list | dict):
                expected.append(ExpectedField(name, field.get, _equal_to(value), show(value)))
            else:
                text = written(scope, where, value)
                try:
                    test = member_test([coerce(field, value, text)])
                except OperandError as exc:
                    scope.error(where, "R063", f"{name}: {exc}")
                    continue
                expected.append(ExpectedField(name, field.get, test, show(value)))
        return tuple(expected)


def _equal_to(expected: Any) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        return bool(value == expected)

    return test


def _absent(value: Any) -> bool:
    return value is None


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True
