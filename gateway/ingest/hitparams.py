"""Read a browser hit's parameters from the query string and/or the body, strictly.

The Meta pixel sends the same parameters as an image GET, a `sendBeacon` POST (text/plain or
form-urlencoded body) or a form POST; the body wins over the query string for a repeated name.
Percent-escapes must decode to valid UTF-8: a hit we cannot read faithfully is refused (400)
rather than relayed with mangled data.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import HitError
from .body import MAX_FIELDS, parse_pairs, read_body, read_multipart, utf8_text

__all__ = ["read_hit_params"]

_FORM_TYPES = ("", "application/x-www-form-urlencoded", "text/plain")


async def read_hit_params(request: web.Request) -> dict[str, str]:
    """All parameters of a hit (GET or POST), or HitError with the reason."""
    params = parse_pairs(request.raw_path.partition("?")[2], "query string")
    if request.method != "POST":
        return params
    content_type = request.content_type
    limit = request.client_max_size
    if content_type == "multipart/form-data":
        fields = await read_multipart(request, limit)
        if len(fields) > MAX_FIELDS:
            raise HitError(f"the body has more than {MAX_FIELDS} parameters")
        params.update(fields)
    elif content_type in _FORM_TYPES or content_type.startswith("text/"):
        text = utf8_text(await read_body(request, limit))
        params.update(parse_pairs(text.strip(), "body"))
    else:
        raise HitError(
            f"unsupported Content-Type {content_type!r}; send form-urlencoded, text/plain "
            "or multipart/form-data",
            status=415,
        )
    return params
