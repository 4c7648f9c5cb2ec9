"""Read a browser hit's parameters from the query string and/or the body, strictly.

The Meta pixel sends the same parameters as an image GET, a `sendBeacon` POST (text/plain or
form-urlencoded body) or a form POST; the body wins over the query string for a repeated name.
Percent-escapes must decode to valid UTF-8: a hit we cannot read faithfully is refused (400)
rather than relayed with mangled data.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from aiohttp import web

from ..errors import HitError

__all__ = ["MAX_FIELDS", "read_hit_params"]

MAX_FIELDS = 200
_FORM_TYPES = ("", "application/x-www-form-urlencoded", "text/plain")


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


async def read_hit_params(request: web.Request) -> dict[str, str]:
    """All parameters of a hit (GET or POST), or HitError with the reason."""
    params = parse_pairs(request.raw_path.partition("?")[2], "query string")
    if request.method != "POST":
        return params
    content_type = request.content_type
    if content_type == "multipart/form-data":
        params.update(await _read_multipart(request))
    elif content_type in _FORM_TYPES or content_type.startswith("text/"):
        body = await _read_body(request)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise HitError("the body is not valid UTF-8") from None
        params.update(parse_pairs(text.strip(), "body"))
    else:
        raise HitError(
            f"unsupported Content-Type {content_type!r}; send form-urlencoded, text/plain "
            "or multipart/form-data",
            status=415,
        )
    return params


def _is_utf8(text: str) -> bool:
    """False for text holding lone surrogates (which some decoders let through)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise HitError(
            f"the body is larger than {request.client_max_size} bytes", status=413
        ) from None
    except web.RequestPayloadError:
        raise HitError("the body cannot be read (bad Content-Encoding or truncated)") from None


async def _read_multipart(request: web.Request) -> dict[str, str]:
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise HitError(
            f"the body is larger than {request.client_max_size} bytes", status=413
        ) from None
    except (web.RequestPayloadError, UnicodeError, LookupError, ValueError, RuntimeError,
            AssertionError):
        # Unknown charset or transfer encoding, undecodable text, a malformed part.
        raise HitError("the multipart body cannot be read (or is not valid UTF-8)") from None
    fields: dict[str, str] = {}
    for name, value in form.items():
        if not isinstance(value, str):
            raise HitError("a multipart field is a file; hits carry text fields only")
        if not _is_utf8(value):
            raise HitError("the multipart body is not valid UTF-8")
        fields[name] = value
    if len(fields) > MAX_FIELDS:
        raise HitError(f"the body has more than {MAX_FIELDS} parameters")
    return fields
