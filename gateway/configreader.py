"""Typed, located reading of a YAML mapping: the machinery under config.py.

A `Reader` walks plain data produced by `yamlsource.load_located`, expands `${VAR}` and
`${VAR:-default}` in strings, converts values to the wanted types and collects every problem as
`file:line:col: key: what is wrong, the bad value, what is valid`, so a person fixes them all in
one pass (as Problem values). Secret values are never echoed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .problems import Problem
from .yamlsource import KeyPath, Marks

__all__ = ["Problems", "Reader", "expand_env"]

T = TypeVar("T")
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MISSING = object()
_TOKEN_PARAM = re.compile(r"access_token=[^&\s'\"]*")


class Problems:
    """Collects located problems."""

    def __init__(self, marks: Marks) -> None:
        self.marks = marks
        self.found: list[Problem] = []

    def add(self, path: KeyPath, message: str, *, at_key: bool = False) -> None:
        self.found.append(self.marks.problem(path, message, key=at_key))


def expand_env(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand `${VAR}`, `${VAR:-default}` and `$$`; return the text and the unset names."""
    unset: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is None:
            unset.append(name)
        return ""

    return _ENV.sub(replace, text), unset


def _show(value: Any) -> str:
    text = _TOKEN_PARAM.sub("access_token=(hidden)", repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


class Reader:
    """One mapping of the document; typed getters record problems and return defaults."""

    def __init__(
        self,
        data: Any,
        path: KeyPath,
        problems: Problems,
        env: Mapping[str, str] | None,
    ) -> None:
        self.path = path
        self.problems = problems
        self.env = env  # None: values are taken as written (no `${VAR}`: data from the console)
        self.ok = isinstance(data, dict)
        if data is None:
            data, self.ok = {}, True
        if not self.ok:
            problems.add(path, f"must be a mapping of keys to values, got {_show(data)}")
        self.data: dict[str, Any] = data if self.ok else {}
        self.known: list[str] = []

    # -- raw access -------------------------------------------------------------------------
    def raw(self, key: str, default: Any = _MISSING, *, secret: bool = False) -> Any:
        """The value at `key`, env-expanded when a string; `default` when absent or null."""
        self.known.append(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                self.problems.add((*self.path, key), "is required")
                return None
            return default
        return self.expand(self.data[key], (*self.path, key), secret=secret)

    def expand(self, value: Any, path: KeyPath, *, secret: bool = False) -> Any:
        if not isinstance(value, str) or self.env is None:
            return value
        expanded, unset = expand_env(value, self.env)
        for name in unset:
            self.problems.add(
                path,
                f"environment variable {name} is not set; set it, or give a default "
                f"with ${{{name}:-default}}",
            )
        return expanded

    def fail(self, key: str, message: str, value: Any = _MISSING, *, secret: bool = False) -> None:
        if value is not _MISSING:
            message += ", got " + ("(hidden)" if secret else _show(value))
        self.problems.add((*self.path, key), message)

    # -- typed getters ----------------------------------------------------------------------
    def string(
        self,
        key: str,
        default: str | object = _MISSING,
        *,
        pattern: str | None = None,
        hint: str = "",
        choices: tuple[str, ...] = (),
        secret: bool = False,
    ) -> str:
        value = self.raw(key, default, secret=secret)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(key, "must be a text value", value, secret=secret)
            return str(default) if isinstance(default, str) else ""
        # An unquoted `0123` is an octal number to YAML; the person meant the text.
        value = self.problems.marks.written((*self.path, key), value)
        if choices and value not in choices:
            suggestion = _did_you_mean(value, choices)
            self.fail(key, f"must be one of {', '.join(choices)}{suggestion}", value)
        elif pattern and not re.fullmatch(pattern, value):
            self.fail(key, f"must be {hint or 'of the form ' + pattern}", value, secret=secret)
        return value

    def number(
        self,
        key: str,
        default: T,
        *,
        kind: Callable[[Any], T],
        low: float | None = None,
        high: float | None = None,
        unit: str = "",
    ) -> T:
        value = self.raw(key, default)
        expected = "a whole number" if kind is int else "a number"
        bounds = _bounds(low, high, unit)
        if isinstance(value, bool):
            self.fail(key, f"must be {expected}{bounds}", value)
            return default
        try:
            converted = kind(value) if not isinstance(value, float) or kind is float else None
        except (TypeError, ValueError):
            converted = None
        if converted is None:
            self.fail(key, f"must be {expected}{bounds}", value)
            return default
        numeric = float(converted)  # type: ignore[arg-type]
        out_of_range = (low is not None and numeric < low) or (high is not None and numeric > high)
        if out_of_range or not math.isfinite(numeric):
            self.fail(key, f"must be {expected}{bounds}", value)
            return default
        return converted

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOLS:
            return _BOOLS[value.lower()]
        self.fail(key, "must be true or false", value)
        return default

    def string_list(self, key: str, *, secret: bool = False) -> list[tuple[KeyPath, str]]:
        """A list of text values, each with its path (for located per-item messages)."""
        value = self.raw(key, [])
        if isinstance(value, str) and value == "":
            return []
        if not isinstance(value, list):
            self.fail(key, "must be a list (write [] for none)", value)
            return []
        items: list[tuple[KeyPath, str]] = []
        for index, item in enumerate(value):
            path = (*self.path, key, index)
            item = self.expand(item, path, secret=secret)
            if isinstance(item, bool) or not isinstance(item, str | int):
                self.problems.add(path, f"must be a text value, got {_show(item)}")
                continue
            items.append((path, self.problems.marks.written(path, item)))
        return items

    def child(self, key: str) -> Reader:
        self.known.append(key)
        return Reader(self.data.get(key), (*self.path, key), self.problems, self.env)

    def children(self, key: str) -> list[Reader]:
        """A list of mappings."""
        self.known.append(key)
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, "must be a list of mappings", value)
            return []
        return [
            Reader(item, (*self.path, key, index), self.problems, self.env)
            for index, item in enumerate(value)
        ]

    def finish(self) -> None:
        """Report keys nobody asked for: a typo must not be silently ignored."""
        for key in self.data:
            if key not in self.known:
                suggestion = _did_you_mean(key, tuple(self.known))
                valid = ", ".join(sorted(set(self.known)))
                self.problems.add(
                    (*self.path, key),
                    f"unknown key{suggestion}; valid keys here: {valid}",
                    at_key=True,
                )


_BOOLS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False, "on": True,
          "off": False}


def _bounds(low: float | None, high: float | None, unit: str) -> str:
    suffix = f" {unit}" if unit else ""
    if low is not None and high is not None:
        return f" between {low:g} and {high:g}{suffix}"
    if low is not None:
        return f" of at least {low:g}{suffix}"
    if high is not None:
        return f" of at most {high:g}{suffix}"
    return ""


def _did_you_mean(word: str, candidates: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
