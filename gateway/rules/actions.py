"""The actions a rule takes, compiled at load: transforms (`set`, `remove`, `rename_event`) into
closures that edit the event's data, and `send_to_destination_only` into a set of names.

Values are checked where Meta would refuse them or where they would leak: `user_data` cannot be
set (a value set by a rule would reach Meta unhashed), `action_source` must be one Meta knows,
`custom_data.value` a number, `currency` a 3-letter code, event names text that Meta accepts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection
from typing import Any

from ..model import ACTION_SOURCES, CURRENCY, MAX_EVENT_NAME, URL
from ..yamlsource import KeyPath
from .fields import Subject
from .problems import Scope, did_you_mean, show

__all__ = ["ACTION_SOURCES", "STANDARD_EVENTS", "Transform", "compile_remove",
           "compile_rename", "compile_route", "compile_set"]

Transform = Callable[[Subject], None]

STANDARD_EVENTS = (
    "AddPaymentInfo", "AddToCart", "AddToWishlist", "CompleteRegistration", "Contact",
    "CustomizeProduct", "Donate", "FindLocation", "InitiateCheckout", "Lead", "PageView",
    "Purchase", "Schedule", "Search", "StartTrial", "SubmitApplication", "Subscribe",
    "ViewContent",
)
SET_TARGETS = ("event_name", "event_source_url", "action_source", "custom_data.<key>")
REMOVE_TARGETS = ("custom_data.<key>", "user_data.<key>", "event_source_url", "referrer_url")
_NUMBER_KEYS = ("value", "predicted_ltv", "net_revenue")


def event_name_problem(value: Any) -> str | None:
    """Why `value` cannot be an event name, or None."""
    if not isinstance(value, str) or not value.strip():
        return f"an event name is text such as Purchase, got {show(value)}"
    if value != value.strip() or len(value) > MAX_EVENT_NAME:
        return f"an event name has no spaces around it and at most {MAX_EVENT_NAME} characters"
    by_lower = {name.lower(): name for name in STANDARD_EVENTS}
    standard = by_lower.get(value.lower())
    if standard is not None and standard != value:
        return f"standard event names are case-sensitive: write '{standard}', not '{value}'"
    return None


def compile_rename(value: Any, path: KeyPath, scope: Scope) -> Transform | None:
    problem = event_name_problem(value)
    if problem is not None:
        scope.error(path, "R052", problem)
        return None
    return _assign_top("event_name", value)


def compile_route(value: Any, path: KeyPath, scope: Scope,
                  destinations: Collection[str]) -> frozenset[str] | None:
    names = [value] if isinstance(value, str) else value
    configured = ", ".join(sorted(destinations)) or "none"
    if not isinstance(names, list) or not names:
        scope.error(path, "R053", "send_to_destination_only lists destination names, e.g. "
                    f"[main]; configured destinations: {configured}; to send an event nowhere "
                    f"use drop: true (got {show(value)})")
        return None
    start = scope.count
    for index, name in enumerate(names):
        where = path if isinstance(value, str) else (*path, index)
        if not isinstance(name, str) or name not in destinations:
            hint = did_you_mean(name, destinations) if isinstance(name, str) else ""
            scope.error(where, "R053", f"no destination named {show(name)}{hint}; configured "
                        f"destinations (config.yaml): {configured}")
    return frozenset(names) if scope.count == start else None


def compile_set(value: Any, path: KeyPath, scope: Scope) -> list[Transform] | None:
    if not isinstance(value, dict) or not value:
        scope.error(path, "R050", "`set` maps fields to new values, e.g. set: "
                    f"{{custom_data.currency: EUR}}, got {show(value)}")
        return None
    start, transforms = scope.count, []
    for target, new in value.items():
        where = (*path, target)
        problem = _set_target_problem(target) or _set_value_problem(target, new)
        if problem is not None:
            scope.error(where, "R050", problem, at_key=problem.startswith("cannot set"))
        elif target.startswith("custom_data."):
            transforms.append(_assign_nested(tuple(target.split(".")[1:]), new))
        else:
            transforms.append(_assign_top(target, new))
    return transforms if scope.count == start else None


def compile_remove(value: Any, path: KeyPath, scope: Scope) -> list[Transform] | None:
    targets = [value] if isinstance(value, str) else value
    if not isinstance(targets, list) or not targets:
        scope.error(path, "R051", "`remove` lists fields to take out, e.g. remove: "
                    f"[custom_data.coupon], got {show(value)}")
        return None
    start, transforms = scope.count, []
    for index, target in enumerate(targets):
        where = path if isinstance(value, str) else (*path, index)
        problem = _remove_problem(target)
        if problem is not None:
            scope.error(where, "R051", problem)
            continue
        root, _, rest = target.partition(".")
        transforms.append(_remove(root, tuple(rest.split(".")) if rest else ()))
    return transforms if scope.count == start else None


def _set_target_problem(target: str) -> str | None:
    root = target.split(".", 1)[0]
    if target in ("event_name", "event_source_url", "action_source"):
        return None
    if root == "custom_data" and "." in target and all(target.split(".")):
        return None
    if root == "user_data":
        return ("cannot set user_data: its values are hashed before rules run, so a value set "
                "here would reach Meta unhashed; rules may remove user_data keys instead")
    if root == "context":
        return ("cannot set context: it is what the gateway observed about the hit; rules read "
                "it but do not change it")
    if root == "url":
        return "cannot set url.*: set event_source_url (the whole address) instead"
    hint = did_you_mean(target, [*SET_TARGETS, "custom_data." + target.split(".")[-1]])
    return f"cannot set '{target}'{hint}; set takes {', '.join(SET_TARGETS)}"


def _set_value_problem(target: str, value: Any) -> str | None:
    if value is None:
        return f"no value; to take {target} out use remove: [{target}]"
    if target == "event_name":
        return event_name_problem(value)
    if target == "event_source_url":
        if isinstance(value, str) and URL.fullmatch(value):
            return None
        return f"event_source_url is an http(s) address, got {show(value)}"
    if target == "action_source":
        if value in ACTION_SOURCES:
            return None
        hint = did_you_mean(str(value), ACTION_SOURCES)
        return f"action_source is one of {', '.join(ACTION_SOURCES)}{hint}, got {show(value)}"
    key = target.split(".", 1)[1]
    if key in _NUMBER_KEYS and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"{target} is a number such as 19.99, without quotes, got {show(value)}"
    if key == "currency" and not (isinstance(value, str) and CURRENCY.fullmatch(value)):
        return f"{target} is a 3-letter ISO 4217 code such as EUR, got {show(value)}"
    if key == "num_items" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{target} is a whole number, got {show(value)}"
    return _json_problem(value)


def _json_problem(value: Any) -> str | None:
    if isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "needs a finite number"
    if isinstance(value, list):
        return next((p for p in map(_json_problem, value) if p), None)
    if isinstance(value, dict):
        return next((p for p in map(_json_problem, value.values()) if p), None)
    return (f"YAML read {value} as a {type(value).__name__}, which cannot be sent to Meta; "
            "put the value in quotes")


def _remove_problem(target: Any) -> str | None:
    if not isinstance(target, str):
        return f"each entry is a field name such as custom_data.coupon, got {show(target)}"
    parts = target.split(".")
    root = parts[0]
    if target in ("event_source_url", "referrer_url") or (
        root == "custom_data" and len(parts) >= 2 and all(parts)
    ) or (root == "user_data" and len(parts) == 2 and parts[1]):
        return None
    if target in ("event_name", "event_time", "action_source", "event_id"):
        return f"cannot remove {target}: Meta requires it (to change the name, use rename_event)"
    if root == "context":
        return "cannot remove context fields: they are never sent to Meta anyway"
    hint = did_you_mean(target, [*REMOVE_TARGETS, "custom_data." + parts[-1]])
    return f"cannot remove '{target}'{hint}; remove takes {', '.join(REMOVE_TARGETS)}"


def _fresh(value: Any) -> Callable[[], Any]:
    """A source of the value: lists and mappings are copied per event, never shared."""
    if isinstance(value, list | dict):
        return lambda: copy.deepcopy(value)
    return lambda: value


def _assign_top(key: str, value: Any) -> Transform:
    fresh = _fresh(value)
    url = key == "event_source_url"

    def assign(subject: Subject) -> None:
        subject.data[key] = fresh()
        if url:
            subject.url_changed()

    return assign


def _assign_nested(keys: tuple[str, ...], value: Any) -> Transform:
    fresh = _fresh(value)

    def assign(subject: Subject) -> None:
        target = subject.data.get("custom_data")
        if not isinstance(target, dict):
            target = subject.data["custom_data"] = {}
        for key in keys[:-1]:
            inner = target.get(key)
            if not isinstance(inner, dict):
                inner = target[key] = {}
            target = inner
        target[keys[-1]] = fresh()

    return assign


def _remove(root: str, keys: tuple[str, ...]) -> Transform:
    url = root == "event_source_url"

    def remove(subject: Subject) -> None:
        if not keys:
            subject.data.pop(root, None)
            if url:
                subject.url_changed()
            return
        target = subject.data.get(root)
        for key in keys[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target.pop(keys[-1], None)

    return remove
