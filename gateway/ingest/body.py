"""Reading request bodies strictly, for browser hits and server events alike.

A body we cannot read faithfully (too large, truncated, badly encoded, not UTF-8) is refused
with a HitError naming what is wrong, never echoing what was sent.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import HitError

__all__ = [
    "MAX_FIELDS",
    "UNREADABLE_FORM",
    "is_utf8",
    "parse_pairs",
    "read_body",
    "read_multipart",
    "read_stream",
    "utf8_text",
]

MAX_FIELDS = 200  # form fields in one hit's query string or body


def is_utf8(text: str) -> bool:
    """False for text holding lone surrogates (which some decoders let through)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def utf8_text(body: bytes | bytearray) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HitError("the body is not valid UTF-8") from None


def too_large(limit: int, advice: str = "") -> HitError:
    return HitError(f"the body is larger than {limit} bytes{advice}", status=413)


async def read_body(request: web.Request, limit: int, advice: str = "") -> bytes:
    """The whole body, at most `limit` bytes (`request` must have that client_max_size)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit, advice) from None
    except (web.RequestPayloadError, ConnectionError):
        raise unreadable() from None


async def read_stream(request: web.Request, limit: int, advice: str = "") -> bytearray:
    """The whole body, read chunk by chunk and refused once past `limit` bytes (after
    decompression, so a small gzip bomb stops there too). Unlike `request.read()` it keeps a
    single copy, allocated once when the length is declared: a large body costs its size in
    memory, not twice that, and no copying as it grows."""
    declared = request.content_length
    if declared is not None and hdrs.CONTENT_ENCODING not in request.headers:
        return await _read_declared(request, declared)
    body = bytearray()
    try:
        while chunk := await request.content.readany():
            body += chunk
            if len(body) > limit:
                raise too_large(limit, advice)
    except (web.RequestPayloadError, ConnectionError):
        raise unreadable() from None
    return body


async def _read_declared(request: web.Request, length: int) -> bytearray:
    """A body of a declared length (HTTP framing guarantees no more arrives)."""
    body = bytearray(length)
    with memoryview(body) as view:
        filled = 0
        try:
            while chunk := await request.content.readany():
                view[filled:filled + len(chunk)] = chunk
                filled += len(chunk)
        except (web.RequestPayloadError, ConnectionError, ValueError):
            raise unreadable() from None

    if filled != length:
        raise unreadable()
    return body


def unreadable() -> HitError:
    return HitError("the body cannot be read (bad Content-Encoding, truncated, or the "
                    "connection was lost)")


# What aiohttp's `request.post()` raises for a form it cannot read: an unknown charset or
# transfer encoding, undecodable text, a malformed part or part header, a body cut off.
UNREADABLE_FORM = (web.RequestPayloadError, web.HTTPException, HttpProcessingError, UnicodeError,
                   LookupError, ValueError, RuntimeError, AssertionError, ConnectionError)


async def read_multipart(request: web.Request, limit: int, advice: str = "") -> dict[str, str]:
    """A multipart/form-data body's text fields."""
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit, advice) from None
    except UNREADABLE_FORM:
        raise HitError("the multipart body cannot be read (or is not valid UTF-8)") from None
    fields: dict[str, str] = {}
    for name, value in form.items():
        if not isinstance(value, str):
            raise HitError("a multipart field is a file; send text fields only")
        if not is_utf8(value):
            raise HitError("the multipart body is not valid UTF-8")
        fields[name] = value
    return fields


def _unquote(text: str) -> str:
    """Form decoding (`+` is a space, %XX escapes) with strict UTF-8; raises UnicodeError."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8")


def parse_pairs(text: str, where: str) -> dict[str, str]:
    """`a=1&b=%C3%A9` -> {"a": "1", "b": "é"}; the last of a repeated name wins.

    A hand-rolled loop rather than urllib's parse_qsl: it skips the decoding work for the
    plain values most hits are made of, which makes it several times faster on the hot path.
    """
    parts = text.split("&")
    if len(parts) > MAX_FIELDS:
        raise HitError(f"the {where} has more than {MAX_FIELDS} parameters")
    params: dict[str, str] = {}
    try:
        for part in parts:
            if not part:
                continue
            name, _, value = part.partition("=")
            if "%" in name or "+" in name:
                name = _unquote(name)
            if "%" in value or "+" in value:
                value = _unquote(value)
            params[name] = value
    except UnicodeError:
        raise HitError(f"the {where} is not valid UTF-8 after percent-decoding") from None
    return params
