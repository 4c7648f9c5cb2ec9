"""First-party `_fbp` / `_fbc` cookies, set by the gateway's own responses (docs/meta-capi.md).

Cookies written by JavaScript live at most 7 days under Safari ITP (1 day after an ad click);
cookies set by an HTTP response from the site's own domain live their full 90 days. So the
gateway mints `_fbp` when a visitor has none, turns an `fbclid` in the page URL (else the
referrer) into `_fbc`, and refreshes both on every hit.

- `_fbp = fb.{subdomain_index}.{creation_ms}.{random}`; `_fbc = fb.{index}.{ms}.{fbclid}`.
- subdomain_index = labels of the cookie domain minus 1 (`example.com` -> 1).
- The same fbclid keeps the existing `_fbc` (creation time unchanged); a new one replaces it;
  fbclid values over 500 characters, or with characters a cookie cannot carry, are ignored.
- Values with a 5th `.appendix` segment (newer Meta SDKs) are accepted and kept as they are.
- Domain: `auto` = the registrable domain of the host (public suffix list, so
  `shop.example.co.uk` -> `example.co.uk`); `""` = host-only; or a fixed domain.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_address

from publicsuffixlist import PublicSuffixList

__all__ = ["MAX_AGE", "OWNER", "BrowserIds", "FirstPartyCookies", "browser_cookies"]

MAX_AGE = 90 * 24 * 3600
OWNER = "meta_capi"  # the destination type whose cookies these are: set only when it is configured
MAX_FBCLID = 500
_FBCLID = re.compile(r"[A-Za-z0-9_-]+")
_FBCLID_PARAM = re.compile(r"[?&]fbclid=([^&]*)")
_APPENDIX = re.compile(r"[A-Za-z0-9_-]+")
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit also takes "²", which is no cookie
_PSL = PublicSuffixList()
_BROWSER_COOKIES = frozenset({"_fbp", "_fbc"})


def browser_cookies(header: str | None, also: frozenset[str] = frozenset()) -> dict[str, str]:
    """The `_fbp` / `_fbc` values (and those named in `also`: other platforms' first-party
    cookies) in a Cookie header; every other cookie is skipped unparsed.

    On the site's own domain the gateway receives all of the site's cookies (analytics,
    consent, session: often kilobytes). Parsing them all into Morsels, as aiohttp's
    `request.cookies` does, cost ~10 us for a bare `_fbp` and ~44 us for a 630-byte header of
    a typical shop, against ~1-3 us here. Like `request.cookies`, the last of a repeated name
    wins and a double-quoted value loses its quotes.
    """
    found: dict[str, str] = {}
    if not header or ("_fb" not in header and not any(name in header for name in also)):
        return found
    wanted = also.union(_BROWSER_COOKIES) if also else _BROWSER_COOKIES
    for part in header.split(";"):
        name, equals, value = part.partition("=")
        name = name.strip()
        if equals and name in wanted:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            found[name] = value
    return found


@dataclass
class BrowserIds:
    """The final fbp/fbc for the event, and the cookies the response must set."""

    fbp: str | None = None
    fbc: str | None = None
    to_set: dict[str, str] = field(default_factory=dict)
    domain: str | None = None  # None: host-only
    labels: int = 1  # the subdomain index: labels of the cookie domain minus one
    secure: bool = False


def _parts(value: str | None) -> list[str] | None:
    """Segments of a valid fb.N.MS.PAYLOAD[.APPENDIX] value, or None."""
    if not value:
        return None
    parts = value.strip().split(".")
    if len(parts) not in (4, 5) or parts[0] != "fb":
        return None
    # The payload (a random number, or an fbclid) must be cookie-safe: the value is written
    # into Set-Cookie as it is.
    if not (_DIGITS.fullmatch(parts[1]) and _DIGITS.fullmatch(parts[2])
            and _FBCLID.fullmatch(parts[3])):
        return None
    if len(parts) == 5 and not _APPENDIX.fullmatch(parts[4]):
        return None
    return parts


def _fbclid(url: str | None) -> str | None:
    """The first `fbclid` query parameter of a URL, if it is one a cookie can carry."""
    if not url or "fbclid=" not in url:
        return None
    match = _FBCLID_PARAM.search(url.partition("#")[0])
    if match is None:
        return None
    value = match.group(1)
    return value if len(value) <= MAX_FBCLID and _FBCLID.fullmatch(value) else None


# A host name as DNS spells it: only such a name may become a cookie's Domain attribute (the
# Host header is the sender's: `evil.com; path=/x` must never reach Set-Cookie).
_HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
                        r"(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*")


@lru_cache(maxsize=1024)
def _cookie_domain(host: str, mode: str) -> tuple[str | None, int]:
    """(Domain attribute or None for host-only, subdomain index) for a request host."""
    try:
        ip_address(host)
        return None, 0
    except ValueError:
        pass
    host = host.lower()
    if not _HOST_NAME.fullmatch(host):
        return None, 1  # not a host name: host-only cookies
    if mode == "auto":
        domain = _PSL.privatesuffix(host)
    elif mode and (host == mode or host.endswith("." + mode)):
        domain = mode
    else:
        domain = None
    named = domain or host
    return domain, max(named.count("."), 0)


class FirstPartyCookies:
    def __init__(self, *, enabled: bool = True, domain: str = "auto") -> None:
        self.enabled = enabled
        self._domain = domain.lower().lstrip(".")

    def resolve(
        self,
        *,
        host: str,
        secure: bool,
        cookies: Mapping[str, str],
        params: Mapping[str, str],
        now_ms: int,
    ) -> BrowserIds:
        """Decide the event's fbp/fbc from cookies, hit parameters and the page URL."""
        domain, index = _cookie_domain(host, self._domain)
        ids = BrowserIds(domain=domain, labels=index, secure=secure)
        fbp = next(
            (".".join(p) for v in (cookies.get("_fbp"), params.get("fbp")) if (p := _parts(v))),
            None,
        )
        if fbp is None:
            fbp = f"fb.{index}.{now_ms}.{secrets.randbelow(2147483647) + 1}"
        ids.fbp = fbp

        existing = None
        for candidate in (cookies.get("_fbc"), params.get("fbc")):
            if (parts := _parts(candidate)) is not None:
                existing, existing_click = ".".join(parts), parts[3]
                break
        clicked = _fbclid(params.get("dl")) or _fbclid(params.get("rl"))
        if clicked is not None and (existing is None or existing_click != clicked):
            existing = f"fb.{index}.{now_ms}.{clicked}"
        ids.fbc = existing

        if self.enabled:
            ids.to_set["_fbp"] = fbp
            if existing:
                ids.to_set["_fbc"] = existing
        return ids
