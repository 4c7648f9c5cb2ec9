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

__all__ = ["MAX_CANDIDATES", "MAX_OCCURRENCES", "TooManyKeys", "candidates"]

MAX_CANDIDATES = 8  # more fields named like a key than any client sends: refused
# Of each name anywhere in the body (values included: a page URL may carry one per event, and
# a request holds up to 1000 events); each costs a few byte comparisons.
MAX_OCCURRENCES = 4096
_QUOTE = ord('"')
_MAX_KEY_CHARS = 512
_NAMES = (b"accessKey", b"access_token")
# After `"accessKey"` in JSON: optional space, a colon, a string of bounded length.
_JSON_VALUE = re.compile(rb'\s*:\s*"((?:[^"\\]|\\.){0,%d})"' % _MAX_KEY_CHARS)
_FORM_BEFORE = frozenset(b"& \t\r\n")  # the parser strips the body's outer whitespace
_FORM_VALUE = re.compile(rb"[^&]{0,%d}(?=&|$)" % (3 * _MAX_KEY_CHARS))


class TooManyKeys(ValueError):
    """The body names an access key field more often than any client does."""


def candidates(body: bytes | bytearray, *, json: bool) -> list[str]:
    """Every value that could be the body's access key: its JSON members so named (`json`), or
    its form fields. One byte search per name; occurrences anywhere (inside values too) are
    capped, so a body stuffed with the name costs no more to refuse."""
    found: list[str] = []
    for name in _NAMES:
        seen = 0
        at = body.find(name)
        while at >= 0:
            seen += 1
            if seen > MAX_OCCURRENCES:
                raise TooManyKeys
            end = at + len(name)
            if json:
                if at > 0 and body[at - 1] == _QUOTE and body[end:end + 1] == b'"':
                    _json_member(body, end + 1, found)
            elif body[end:end + 1] == b"=" and (at == 0 or body[at - 1] in _FORM_BEFORE):
                _form_field(body, end + 1, found)
            at = body.find(name, end)
    return found


def _add(found: list[str], value: str) -> None:
    if not value:  # as the parser sees an empty key: none
        return
    if len(found) >= MAX_CANDIDATES:
        raise TooManyKeys
    found.append(value)


def _json_member(body: bytes | bytearray, start: int, found: list[str]) -> None:
    match = _JSON_VALUE.match(body, start)
    if match is None:
        return
    raw = match.group(1)
    if b"\\" not in raw:
        _add(found, raw.decode("utf-8", "replace"))
        return
    try:
        _add(found, orjson.loads(b'"' + raw + b'"'))
    except orjson.JSONDecodeError:
        pass


def _form_field(body: bytes | bytearray, start: int, found: list[str]) -> None:
    match = _FORM_VALUE.match(body, start)
    if match:
        value = match.group().replace(b"+", b" ")
        _add(found, unquote_to_bytes(value).decode("utf-8", "replace").strip())
