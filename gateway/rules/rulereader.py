"""Read one rule (a mapping under `rules:`) into a compiled Rule, reporting every problem."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ..yamlsource import KeyPath
from .actions import Transform, compile_remove, compile_rename, compile_route, compile_set
from .conditions import RULE_KEYS, Compiler, Predicate, conjuncts
from .lists import NamedList
from .plans import Guard
from .problems import Scope, did_you_mean, show, written
from .ruleset import Rule

__all__ = ["read_rule"]

ACTIONS = ("drop", "send_to_destination_only", "set", "remove", "rename_event")
RULE_KEY_HINTS = {
    "if": "when", "condition": "when", "conditions": "when", "where": "when", "match": "when",
    "filter": "when", "route": "send_to_destination_only", "send_to": "send_to_destination_only",
    "destination": "send_to_destination_only", "destinations": "send_to_destination_only",
    "only": "send_to_destination_only", "rename": "rename_event", "delete": "remove",
    "unset": "remove", "disabled": "enabled", "active": "enabled", "title": "name",
    "id": "name", "block": "drop", "exclude": "drop", "skip": "drop",
}


def read_rule(
    node: Any,
    path: KeyPath,
    file_scope: Scope,
    lists: Mapping[str, NamedList],
    destinations: Collection[str],
    seen: dict[str, str],
) -> Rule | None:
    """The compiled rule at `path` (`seen`: names already used -> where), or None if broken."""
    number = f"#{int(path[-1]) + 1}"
    if not isinstance(node, dict):
        file_scope.about(f"rule '{number}'").error(
            path, "R011", "each rule is a mapping that starts with `name:`, e.g. "
            f"- name: drop bots, got {show(node)}")
        return None
    start = file_scope.count
    name = _name(node, path, file_scope, seen, number)
    scope = file_scope.about(f"rule '{name or number}'")
    _unknown_keys(node, path, scope)
    enabled = _flag(node, "enabled", True, path, scope)
    description = node.get("description", "")
    if not isinstance(description, str):
        scope.error((*path, "description"), "R014", "description is text; put it in quotes, "
                    f"got {show(description)}")
    when, guards = _when(node, path, scope, lists)
    transforms = _transforms(node, path, scope)
    only = None
    if "send_to_destination_only" in node:
        only = compile_route(node["send_to_destination_only"],
                             (*path, "send_to_destination_only"), scope, destinations)
    drop = _flag(node, "drop", False, path, scope)
    _check_actions(node, path, scope)
    if name is None or file_scope.count != start:
        return None
    return Rule(name=name, when=when, transforms=tuple(transforms), only=only, drop=drop,
                enabled=enabled, guards=guards)


def _name(node: dict[str, Any], path: KeyPath, scope: Scope, seen: dict[str, str],
          number: str) -> str | None:
    where = (*path, "name")
    raw = node.get("name")
    unnamed = scope.about(f"rule '{number}'")
    if raw is None:
        unnamed.error(path, "R012", "every rule needs a name (it appears in test results and "
                      "metrics): add e.g. `name: drop bots`")
        return None
    if isinstance(raw, dict | list):
        unnamed.error(where, "R012", "a rule name is text, got " + show(raw))
        return None
    name = written(scope, where, raw).strip()
    if not name or len(name) > 100 or "\n" in name:
        unnamed.error(where, "R012", "a rule name is one line of text of at most 100 "
                      "characters")
        return None
    if name in seen:
        scope.about(f"rule '{name}'").error(
            where, "R012", f"another rule has this name (at {seen[name]}); names must be "
            "unique across all rule files, so rename one")
        return name  # reported: the rule is not kept, but its other problems name it
    seen[name] = scope.marks.locate(path)
    return name


def _unknown_keys(node: dict[str, Any], path: KeyPath, scope: Scope) -> None:
    for key in node:
        if key not in RULE_KEYS:
            hint = did_you_mean(key, RULE_KEYS, RULE_KEY_HINTS)
            scope.error((*path, key), "R011", f"unknown key '{key}'{hint}; a rule has "
                        f"{', '.join(RULE_KEYS)}", at_key=True)


def _flag(node: dict[str, Any], key: str, default: bool, path: KeyPath, scope: Scope) -> bool:
    value = node.get(key, default)
    if isinstance(value, bool):
        return value
    scope.error((*path, key), "R014", f"{key} is true or false, got {show(value)}")
    return default


def _when(node: dict[str, Any], path: KeyPath, scope: Scope,
          lists: Mapping[str, NamedList]) -> tuple[Predicate | None, tuple[Guard, ...]]:
    """The compiled `when`, and its guards: equality tests that must hold (for the index)."""
    if "when" not in node:
        return None, ()
    if node["when"] is None:
        scope.error((*path, "when"), "R030", "`when` is empty; give a condition, or leave "
                    "`when` out to match every event")
        return None, ()
    compiler = Compiler(scope, lists)
    when = compiler.condition(node["when"], (*path, "when"))
    must_hold = conjuncts(node["when"], (*path, "when"))
    return when, tuple(compiler.equalities[p] for p in must_hold if p in compiler.equalities)


def _transforms(node: dict[str, Any], path: KeyPath, scope: Scope) -> list[Transform]:
    transforms: list[Transform] = []
    if "set" in node:
        transforms += compile_set(node["set"], (*path, "set"), scope) or []
    if "remove" in node:
        transforms += compile_remove(node["remove"], (*path, "remove"), scope) or []
    if "rename_event" in node:
        rename = compile_rename(node["rename_event"], (*path, "rename_event"), scope)
        transforms += [rename] if rename is not None else []
    return transforms


def _check_actions(node: dict[str, Any], path: KeyPath, scope: Scope) -> None:
    present = [key for key in ACTIONS if key in node and node[key] is not False]
    when = node.get("when")
    misplaced = any(key not in RULE_KEYS for key in node) or (
        isinstance(when, dict) and any(key in ACTIONS for key in when))
    if not present and not misplaced:  # a misspelt or misplaced action is reported already
        scope.error(path, "R013", "the rule does nothing: add an action (drop: true, "
                    "send_to_destination_only, set, remove or rename_event)")
        return
    if node.get("drop") is True and len(present) > 1:
        others = ", ".join(key for key in present if key != "drop")
        scope.error((*path, "drop"), "R013", f"a rule that drops the event cannot also use "
                    f"{others}: a dropped event goes nowhere; split it into two rules",
                    at_key=True)
    setting = node.get("set")
    if "rename_event" in node and isinstance(setting, dict) and "event_name" in setting:
        scope.error((*path, "rename_event"), "R013", "rename_event and set: {event_name: ...} "
                    "both change the event name; keep one", at_key=True)
