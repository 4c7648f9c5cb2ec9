"""The fields rules can read, by dotted path, and the per-event view they read them from.

A field compiles once, at load, into a getter: `Subject -> value`, where None means absent (or
null, or the wrong shape on the way: `custom_data` that is not a mapping). Getters never raise.
`url.*` parses `event_source_url` at most once per event, and only when a rule asks for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus, urlsplit

from ..model import Event

__all__ = ["Field", "Getter", "Predicate", "Subject", "Test", "bind", "field_candidates",
           "resolve_field"]

Kind = Literal["text", "number", "bool", "any"]


# scheme://[userinfo@]host[:port]path[?query][#fragment]; anything else is left to urlsplit.
_URL = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(\[[^\]/?#]*\]|[^:/?#]*)(?::[0-9]*)?"
    r"([^?#]*)(?:\?([^#]*))?"
)


class Subject:
    """One event as rules see it: its data, its context, and its URL parsed on demand."""

    __slots__ = ("_host", "_path", "_query", "_query_text", "_url_read", "context", "data")

    def __init__(self, event: Event) -> None:
        self.data = event.data
        self.context = event.context
        self._url_read = False
        self._host: str | None = None
        self._path: str | None = None
        self._query_text = ""
        self._query: dict[str, str] | None = None

    def _read_url(self) -> None:
        self._url_read = True
        url = self.data.get("event_source_url")
        if not isinstance(url, str):
            return
        match = _URL.match(url)
        if match is not None:
            host, path, query = match.groups()
            bracketed = host.startswith("[")
            if bracketed and not host.endswith("]"):
                return  # an unbalanced [ : no usable address
            self._host = (host[1:-1] if bracketed else host).lower() or None
            self._path = path or "/"
            self._query_text = query or ""
            return
        try:  # relative or unusual addresses: the standard library's reading
            split = urlsplit(url)
        except ValueError:  # e.g. an unbalanced [ in the host
            return
        self._host = split.hostname
        self._path = split.path or ("/" if split.netloc else None)
        self._query_text = split.query

    def host(self) -> str | None:
        if not self._url_read:
            self._read_url()
        return self._host

    def path(self) -> str | None:
        if not self._url_read:
            self._read_url()
        return self._path

    def query(self) -> dict[str, str]:
        if self._query is None:
            if not self._url_read:
                self._read_url()
            self._query = _parse_query(self._query_text)
        return self._query

    def url_changed(self) -> None:
        """A rule set or removed event_source_url: read it again when next asked."""
        self._url_read = False
        self._host = self._path = None
        self._query_text = ""
        self._query = None


def _parse_query(text: str) -> dict[str, str]:
    """Query parameters, percent-decoded; the first value of a repeated name wins."""
    params: dict[str, str] = {}
    if not text:
        return params
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = unquote_plus(name), unquote_plus(value)
        params.setdefault(name, value)
    return params


Getter = Callable[[Subject], Any]
Test = Callable[[Any], bool]
Predicate = Callable[[Subject], bool]
# How a field is reached, so predicates can read it inline (one call per test, not two):
# ("data", key) | ("data", root, key) | ("context", name) | ("context", part, name) |
# ("url", "host" or "path") | ("query", name) | () other.
Access = tuple[str, ...]


@dataclass(frozen=True)
class Field:
    path: str
    get: Getter
    kind: Kind  # what values the field holds, for checking and reading operands
    hashed: bool = False  # user_data: only existence can be tested
    access: Access = ()


def bind(field: Field, test: Test) -> Predicate:
    """The predicate `test(value of field)`, with the field read inline where possible."""
    access = field.access
    if access[:1] == ("data",) and len(access) == 2:
        key = access[1]
        return lambda subject: test(subject.data.get(key))
    if access[:1] == ("data",):
        root, key = access[1], access[2]

        def in_mapping(subject: Subject) -> bool:
            mapping = subject.data.get(root)
            return test(mapping.get(key) if type(mapping) is dict else None)

        return in_mapping
    if access[:1] == ("context",) and len(access) == 2:
        name = access[1]
        return lambda subject: test(getattr(subject.context, name, None))
    if access[:1] == ("context",):
        part, name = access[1], access[2]

        def in_part(subject: Subject) -> bool:
            info = getattr(subject.context, part, None)
            return test(None if info is None else getattr(info, name, None))

        return in_part
    if access[:1] == ("url",):
        return _bind_url(access[1], test)
    if access[:1] == ("query",):
        name = access[1]

        def in_query(subject: Subject) -> bool:
            query = subject._query
            return test((query if query is not None else subject.query()).get(name))

        return in_query
    get = field.get
    return lambda subject: test(get(subject))


def _bind_url(part: str, test: Test) -> Predicate:
    if part == "host":
        def host(subject: Subject) -> bool:
            if not subject._url_read:
                subject._read_url()
            return test(subject._host)

        return host

    def path(subject: Subject) -> bool:
        if not subject._url_read:
            subject._read_url()
        return test(subject._path)

    return path


def _top(key: str) -> Getter:
    def get(subject: Subject) -> Any:
        return subject.data.get(key)

    return get


def _nested(root: str, keys: tuple[str, ...]) -> Getter:
    def get(subject: Subject) -> Any:
        value = subject.data.get(root)
        for key in keys:
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                return None
        return value

    return get


def _context(name: str) -> Getter:
    def get(subject: Subject) -> Any:
        return getattr(subject.context, name, None)

    return get


def _part(part: str, name: str) -> Getter:
    def get(subject: Subject) -> Any:
        info = getattr(subject.context, part, None)
        return None if info is None else getattr(info, name, None)

    return get


def _url_host(subject: Subject) -> Any:
    return subject.host()  # lowercase, without port


def _url_path(subject: Subject) -> Any:
    return subject.path()


def _url_query(name: str) -> Getter:
    def get(subject: Subject) -> Any:
        return subject.query().get(name)

    return get


def _fixed(path: str, kind: Kind) -> Field:
    parts = path.split(".")
    if len(parts) == 1:
        return Field(path, _top(path), kind, access=("data", path))
    if parts[0] == "context" and len(parts) == 2:
        return Field(path, _context(parts[1]), kind, access=("context", parts[1]))
    if parts[0] == "context":
        return Field(path, _part(parts[1], parts[2]), kind, access=("context", *parts[1:]))
    return Field(path, _url_host if path == "url.host" else _url_path, kind,
                 access=("url", parts[1]))


_FIXED_KINDS: tuple[tuple[str, Kind], ...] = (
    ("event_name", "text"), ("event_id", "text"), ("event_time", "number"),
    ("action_source", "text"), ("event_source_url", "text"), ("referrer_url", "text"),
    ("context.ip", "text"), ("context.pixel_id", "text"), ("context.source", "text"),
    ("context.ua.browser", "text"), ("context.ua.browser_version", "text"),
    ("context.ua.os", "text"), ("context.ua.os_version", "text"),
    ("context.ua.device", "text"), ("context.ua.is_bot", "bool"),
    ("context.geo.country", "text"), ("context.geo.region", "text"),
    ("context.geo.city", "text"), ("context.geo.postal", "text"),
    ("context.consent.ad_storage", "bool"), ("context.consent.analytics_storage", "bool"),
    ("context.consent.ad_user_data", "bool"), ("context.consent.ad_personalization", "bool"),
    ("url.host", "text"), ("url.path", "text"),
)
_FIXED = {path: _fixed(path, kind) for path, kind in _FIXED_KINDS}
_OPEN_ENDED = ("custom_data.", "user_data.", "url.query.")


def field_candidates(path: str = "") -> list[str]:
    """Valid field names, for did-you-mean (open-ended ones completed with `path`'s tail)."""
    candidates = list(_FIXED)
    parts = path.split(".")
    for prefix in _OPEN_ENDED:
        depth = prefix.count(".")
        tail = ".".join(parts[depth:]) if len(parts) > depth else ""
        candidates.append(prefix + (tail or "<key>"))
    return candidates


def resolve_field(path: str) -> Field | str:
    """The field at a dotted path, or a message saying why there is none."""
    fixed = _FIXED.get(path)
    if fixed is not None:
        return fixed
    parts = path.split(".")
    if any(not part for part in parts):
        return f"'{path}' has an empty part; write names separated by single dots"
    root = parts[0]
    if root == "custom_data" and len(parts) >= 2:
        access = ("data", *parts) if len(parts) == 2 else ()
        return Field(path, _nested("custom_data", tuple(parts[1:])), "any", access=access)
    if root == "user_data" and len(parts) == 2:
        return Field(path, _nested("user_data", (parts[1],)), "any", hashed=True,
                     access=("data", *parts))
    if parts[:2] == ["url", "query"] and len(parts) == 3:
        return Field(path, _url_query(parts[2]), "text", access=("query", parts[2]))
    if path in ("custom_data", "user_data", "url.query"):
        return f"'{path}' needs a key after it, such as {path}.{_EXAMPLE_KEY[path]}"
    return f"unknown field '{path}'"


_EXAMPLE_KEY = {"custom_data": "value", "user_data": "em", "url.query": "utm_source"}
