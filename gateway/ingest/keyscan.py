"""Find the access keys a server-events body may carry, without parsing it.

Parsing and walking a body of several megabytes costs far more than reading it, so a request
whose body names no valid key is refused before it is parsed: `candidates` lists every value of
a field named `accessKey` or `access_token`, found with byte searches (memchr speed) and a small
anchored match per occurrence. It is a superset of where the parser takes the key from (a
JSON member or a form field at the top level), so a request the parser would authorize has a
matching candidate (unless it spells the member's name with JSON escapes, `"access\\u004bey"`,
which no client does: refused as if it had no key); the parser's key is checked afterwards.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import orjson

__all__ = ["MAX_CANDIDATES", "TooManyKeys", "candidates"]

MAX_CANDIDATES = 8  # more fields named like a key than any client sends: refused
_MAX_KEY_CHARS = 512
_NAMES = (b"accessKey", b"access_token")
# After `"accessKey"` in JSON: optional space, a colon, a string of bounded length.
_JSON_VALUE = re.compile(rb'\s*:\s*"((?:[^"\\]|\\.){0,%d})"' % _MAX_KEY_CHARS)
_FORM_BEFORE = frozenset(b"& \t\r\n")  # the parser strips the body's outer whitespace
_FORM_VALUE = re.compile(rb"[^&]{0,%d}(?=&|$)" % (3 * _MAX_KEY_CHARS))


class TooManyKeys(ValueError):
    """The body holds more than MAX_CANDIDATES fields named like an access key."""


def candidates(body: bytes | bytearray) -> list[str]:
    """Every value that could be the body's access key (JSON members and form fields)."""
    found: list[str] = []
    for name in _NAMES:
        _json_members(body, name, found)
        _form_fields(body, name, found)
    return found


def _add(found: list[str], value: str) -> None:
    if not value:  # as the parser sees an empty key: none
        return
    if len(found) >= MAX_CANDIDATES:
        raise TooManyKeys
    found.append(value)


def _json_members(body: bytes | bytearray, name: bytes, found: list[str]) -> None:
    quoted = b'"' + name + b'"'
    at = body.find(quoted)
    while at >= 0:
        match = _JSON_VALUE.match(body, at + len(quoted))
        if match:
            raw = match.group(1)
            if b"\\" in raw:
                try:
                    _add(found, orjson.loads(b'"' + raw + b'"'))
                except orjson.JSONDecodeError:
                    pass
            else:
                _add(found, raw.decode("utf-8", "replace"))
        at = body.find(quoted, at + len(quoted))


def _form_fields(body: bytes | bytearray, name: bytes, found: list[str]) -> None:
    head = name + b"="
    at = body.find(head)
    while at >= 0:
        if at == 0 or body[at - 1] in _FORM_BEFORE:
            match = _FORM_VALUE.match(body, at + len(head))
            if match:
                value = match.group().replace(b"+", b" ")
                _add(found, unquote_to_bytes(value).decode("utf-8", "replace").strip())
        at = body.find(head, at + len(head))
