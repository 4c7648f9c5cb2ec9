"""Read a server-events request body (docs/server-events.md) strictly, before anything is stored.

What the official SDKs and the CAPI Gateway clients send, all accepted:
- JSON (`/capi` parses JSON whatever the Content-Type; PHP/Java send none in Meta's example),
  `application/x-www-form-urlencoded` (Python SDK) and `multipart/form-data` bodies;
- `data` as an array or as a JSON string of one; each event as an object or as a JSON string of
  one (the Python SDK encodes every event, then the list, then the form);
- the key as `accessKey` or `access_token` in the body, or `access_token` in the query string.

Limits: the body size (413), `MAX_EVENTS` events (400) and `MAX_DEPTH` levels of nesting (400).
Every refusal is a HitError whose message names the field, never its value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from ..errors import HitError
from .body import parse_pairs, read_multipart, read_stream, too_large, utf8_text

__all__ = [
    "FORWARDED_FIELDS",
    "MAX_DEPTH",
    "MAX_EVENTS",
    "RawBody",
    "ServerBody",
    "parse_server_body",
    "read_raw_body",
]

MAX_EVENTS = 1000  # Meta's own limit per request
MAX_DEPTH = 16  # body object = 1, data = 2, an event = 3, custom_data = 4, contents = 5, ...
# Top-level fields kept with each event and forwarded upstream with its batch.
FORWARDED_FIELDS = ("test_event_code", "partner_agent", "namespace_id", "upload_tag",
                    "upload_id", "upload_source")
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"
_TRUE, _FALSE = ("true", "1"), ("false", "0", "")
_ADVICE = "; send fewer events per request"
_OPENS_OBJECT = re.compile(rb"\s*\{")


@dataclass
class ServerBody:
    """One request's events (still raw CAPI dicts) and what travels with them."""

    events: list[dict[str, Any]]
    access_key: str = field(default="", repr=False)
    strict: bool = False
    forwarded: dict[str, Any] = field(default_factory=dict)  # FORWARDED_FIELDS present


@dataclass
class RawBody:
    """A request as read, before it is parsed: its body bytes, or a multipart form's fields."""

    content_type: str
    json_only: bool
    query: dict[str, str] = field(repr=False)
    data: bytes | bytearray = field(default=b"", repr=False)
    form: dict[str, str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def is_json(self) -> bool:
        """Whether the body is read as JSON; otherwise as a form (or refused, 415)."""
        content_type = self.content_type
        if self.json_only or content_type == "application/json" or content_type.endswith("+json"):
            return True
        if content_type in (_FORM, "", "application/octet-stream") or \
                content_type.startswith("text/"):
            # No declared type: the body tells (`{` = JSON, like Meta's own curl examples).
            return _OPENS_OBJECT.match(self.data) is not None
        return False


async def read_raw_body(request: web.Request, *, limit: int, json_only: bool) -> RawBody:
    """The query and the body, at most `limit` bytes after decompression, or HitError."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, _ADVICE)
    query = parse_pairs(request.raw_path.partition("?")[2], "query string")
    content_type = request.content_type
    if not json_only and content_type == _MULTIPART:
        form = await read_multipart(request.clone(client_max_size=limit), limit, _ADVICE)
        return RawBody(content_type, json_only, query, form=form)
    return RawBody(content_type, json_only, query,
                   data=await read_stream(request, limit, _ADVICE))


def parse_server_body(raw: RawBody) -> ServerBody:
    """Parse and check the whole request, or raise HitError (400, 415) with the reason.

    Synchronous and self-contained, so that a large body can be parsed off the event loop."""
    fields = dict(raw.form) if raw.form is not None else _fields(raw)
    key = _text(fields.get("accessKey")) or _text(fields.get("access_token")) \
        or raw.query.get("access_token", "")
    strict_given = fields.get("strict", raw.query.get("strict", ""))
    return ServerBody(
        events=_events(fields.get("data")),
        access_key=key,
        strict=_flag(strict_given),
        forwarded=_forwarded(fields),
    )


def _fields(raw: RawBody) -> dict[str, Any]:
    if raw.is_json:
        return _json_object(raw.data)
    content_type = raw.content_type
    if content_type in (_FORM, "", "application/octet-stream") or \
            content_type.startswith("text/"):
        return dict(parse_pairs(utf8_text(raw.data).strip(), "body"))
    raise HitError(
        f"unsupported Content-Type {content_type!r}; send application/json, "
        f"{_FORM} or {_MULTIPART}", status=415,
    )


def _loads(text: bytes | bytearray | str, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # orjson's messages name the problem and position, never the document's content.
        raise HitError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} "
                       f"column {exc.colno})") from None


def _json_object(body: bytes | bytearray) -> dict[str, Any]:
    if not body.strip():
        raise HitError('the body is empty; send a JSON object such as {"data": [...]}')
    value = _loads(body, "the body")
    if not isinstance(value, dict):
        raise HitError('the body must be a JSON object such as {"data": [...]}')
    if _too_deep(value, MAX_DEPTH):
        raise HitError(f"the body is nested more than {MAX_DEPTH} levels deep")
    return value


def _events(data: Any) -> list[dict[str, Any]]:
    """`data` as a list of event objects (decoding JSON strings), within the limits."""
    if data is None:
        raise HitError("missing parameter 'data' (the array of events)")
    if isinstance(data, str):
        data = _loads(data, "parameter 'data'")
    if not isinstance(data, list):
        raise HitError("parameter 'data' must be an array of events (or a JSON string of one)")
    if not data:
        raise HitError("parameter 'data' must hold at least one event")
    if len(data) > MAX_EVENTS:
        raise HitError(f"parameter 'data' holds {len(data)} events; at most {MAX_EVENTS} are "
                       "accepted per request")
    events = []
    for index, item in enumerate(data):
        event = _loads(item, f"data[{index}]") if isinstance(item, str) else item
        if not isinstance(event, dict):
            raise HitError(f"data[{index}] must be an event object (or a JSON string of one)")
        # An event sits at depth 3 of a body ({"data": [event]}).
        if _too_deep(event, MAX_DEPTH - 2):
            raise HitError(f"data[{index}] is nested more than {MAX_DEPTH} levels deep")
        events.append(event)
    return events


def _too_deep(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """True if containers nest more than `limit` levels (`value` itself is level 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise HitError("parameter 'strict' must be true or false")


def _forwarded(fields: dict[str, Any]) -> dict[str, Any]:
    forwarded = {}
    for name in FORWARDED_FIELDS:
        value = fields.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise HitError(f"parameter {name!r} must be text")
        forwarded[name] = value
    return forwarded
