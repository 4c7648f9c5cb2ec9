"""`GET {prefix}/gw.js`: the first-party, fbq-compatible browser script (docs/snippet.md).

The script is the committed, minified `gateway/static/gw.min.js` (built from `gw.js` by
`snippet/`'s `npm run build`; the gateway never runs node). It is read and hashed once, at
start-up, with a gzip copy made then too, so a request costs a header comparison.

Caching is CDN-shaped: `max-age=300, stale-while-revalidate=86400` lets an edge serve the
script for a day while revalidating in the background, and a release reaches browsers within
about five minutes; the strong `ETag` (a hash of the file) makes the revalidation a 304.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aiohttp import hdrs, web

__all__ = ["CACHE_CONTROL", "SCRIPT_NAME", "SNIPPET_FILE", "Script", "add_snippet_routes"]

SNIPPET_FILE = Path(__file__).resolve().parent.parent / "static" / "gw.min.js"
SCRIPT_NAME = "gw.js"
CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=86400"
_ADDED = web.AppKey("snippet_routes_added", bool)


@dataclass(frozen=True)
class Script:
    """The script's bytes, their gzip copy, and a strong ETag for each representation."""

    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str

    @classmethod
    def from_bytes(cls, body: bytes) -> Script:
        digest = hashlib.sha256(body).hexdigest()[:32]
        # mtime=0: the same file always gzips to the same bytes (stable across restarts).
        return cls(body=body, gzipped=gzip.compress(body, 9, mtime=0), etag=f'"{digest}"',
                   gzip_etag=f'"{digest}-gz"')

    def respond(self, request: web.Request) -> web.Response:
        """200 with the script (gzipped if accepted), or 304 when If-None-Match matches."""
        zipped = _accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
        etag = self.gzip_etag if zipped else self.etag
        headers = {
            hdrs.CACHE_CONTROL: CACHE_CONTROL,
            hdrs.ETAG: etag,
            hdrs.VARY: "Accept-Encoding",
            # Public code: lets a page load it with crossorigin/SRI from a sibling host.
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*",
            "X-Content-Type-Options": "nosniff",
        }
        if _matches(request.headers.get(hdrs.IF_NONE_MATCH, ""), etag):
            return web.Response(status=304, headers=headers)
        if zipped:
            headers[hdrs.CONTENT_ENCODING] = "gzip"
        return web.Response(
            body=self.gzipped if zipped else self.body, headers=headers,
            content_type="application/javascript", charset="utf-8",
        )


@cache
def load_script(path: Path = SNIPPET_FILE) -> Script:
    """Read and hash the script file (once per process and path: at start-up)."""
    return Script.from_bytes(path.read_bytes())


def add_snippet_routes(app: web.Application, prefix: str, *, name: str = SCRIPT_NAME) -> None:
    """Serve the script at `{prefix}/{name}` (GET and HEAD); a second call does nothing."""
    if app.get(_ADDED):
        return
    script = load_script()

    async def serve_script(request: web.Request) -> web.Response:
        return script.respond(request)

    app.router.add_get(f"{prefix}/{name}", serve_script)
    app[_ADDED] = True


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            return not _q_is_zero(params)
    return False


def _q_is_zero(params: str) -> bool:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value) == 0
            except ValueError:
                return False
    return False


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match requires (`W/"x"` matches `"x"`)."""
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
