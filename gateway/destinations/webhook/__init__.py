"""`type: webhook`: any HTTP endpoint (a warehouse loader, a chat workflow, the site's own
backend) receives signed JSON batches of the neutral event.

Options (beside the envelope every destination has): `url` (required, http(s)), `secret` (the
HMAC key; empty: dry run), `headers` (extra request headers; values may come from ${ENV}). The
request, its signature and the classification of answers live in sender.py;
docs/destinations.md is what a receiver relies on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from ..base import DestinationBase, summarize
from .sender import (
    RESERVED_KEY,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    batch_body,
    batch_events,
    post_batch,
    sensitive_values,
)

if TYPE_CHECKING:
    from ...configreader import Reader
    from ...model import Context
    from ...settings import DestinationSettings
    from ...storage import ClaimedRow

__all__ = ["RESERVED_KEY", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WEBHOOK", "Webhook",
           "WebhookOptions", "WebhookType"]

MAX_BATCH_SIZE = 1000  # our choice: ~1-2 MB of JSON, which receivers commonly take
EXPIRY_DAYS = 7  # events older than this are not sent (kept as dead letters, `expired`)

# Header names (RFC 9110 tokens), and those a destination's `headers` may not set.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[\t\x20-\x7e]+")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "trailers", "transfer-encoding",
                        "upgrade"})
PER_REQUEST = frozenset({"host", "content-length", "content-type", "content-encoding",
                         "expect"})
OWN_PREFIX = "x-gateway-"


@dataclass(frozen=True)
class WebhookOptions:
    url: str = field(default="", repr=False)  # its path or query may hold a token
    secret: str = field(default="", repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # values may be secret

    @property
    def credentials(self) -> tuple[str, ...]:
        # A header may carry the receiver's own credentials (Authorization): a change of
        # either lifts a pause for refused credentials.
        return (self.secret, *(value for _, value in self.headers))

    @property
    def missing_credentials(self) -> str:
        return "" if self.secret else "no secret"

    @property
    def default_accepts(self) -> frozenset[str] | None:
        return None

    @property
    def header_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.headers)


class WebhookType:
    name = "webhook"
    vendor = "the webhook receiver"
    credentials_name = "secret"
    account_option = "url"
    secret_option = "secret"
    # Options beside `secret` that may carry credentials (a token in the url's path or query,
    # an Authorization header): the console seals only `secret_option`, so it refuses these
    # and a webhook goes in config.yaml, where they may come from ${ENV}.
    console_refused_options = ("url", "headers")
    # The receiver may be the site's own backend: by default every event goes, and each
    # carries the visitor's consent signals (`_gateway.consent`) for the receiver to honour.
    default_consent = "none"
    takes_test_events = True
    max_batch_size = MAX_BATCH_SIZE
    cookie_names: frozenset[str] = frozenset()

    def first_party_cookies(self, found: Mapping[str, str], *, now: float, labels: int,
                            click_ids: Mapping[str, str]) -> dict[str, str]:
        return {}

    def identities(self, user_data: Mapping[str, Any], default_country: str | None
                   ) -> dict[str, Any]:
        return {}  # the neutral event's user_data, hashed Meta's way, is what it receives

    def validate(self, data: dict[str, Any], now: float) -> list[str]:
        return []  # a receiver of our own format takes every event the gateway accepts

    def expires(self, data: dict[str, Any]) -> float:
        event_time = data.get("event_time")
        if isinstance(event_time, bool) or not isinstance(event_time, int | float):
            event_time = time.time()
        return float(event_time) + EXPIRY_DAYS * 86400

    def read_options(self, r: Reader) -> WebhookOptions:
        return WebhookOptions(
            url=_url(r),
            secret=r.string("secret", "", secret=True, pattern=r"[!-~]*",
                            hint="printable ASCII without spaces (e.g. from "
                                 "`openssl rand -hex 32`)"),
            headers=_headers(r),
        )

    def build(self, settings: DestinationSettings) -> Webhook:
        return Webhook(settings, self)


def shown_url(url: str) -> str:
    """The URL for people and logs: scheme and host only (receivers such as Slack's, Discord's
    or Zapier's hooks carry their secret in the path or the query)."""
    scheme, _, rest = url.partition("://")
    host, slash, tail = rest.partition("/")
    host = host.split("?", 1)[0]
    return f"{scheme}://{host}" + ("/..." if (slash and tail) or "?" in rest else "")


def _url(r: Reader) -> str:
    url = r.string("url")
    if not url and "url" not in r.data:
        return ""  # `is required`, already reported
    shown = shown_url(url)
    hint = "an http(s) URL such as https://collect.example.com/events"
    try:
        parsed = URL(url)
    except ValueError:
        r.fail("url", f"must be {hint}", shown)
        return url
    if parsed.scheme not in ("http", "https") or not parsed.host or re.search(r"\s", url):
        r.fail("url", f"must be {hint}", shown)
    elif parsed.user is not None or parsed.password is not None:
        r.fail("url", "must not carry a user or password; send credentials in headers "
               "(e.g. Authorization: Bearer ${TOKEN})", url, secret=True)
    elif parsed.fragment or url.endswith("#"):
        r.fail("url", f"must be {hint} without a #fragment", shown)
    return url


def _headers(r: Reader) -> tuple[tuple[str, str], ...]:
    """`headers`: a mapping of header names to values (values never echoed)."""
    r.known.append("headers")
    raw = r.data.get("headers")
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        r.fail("headers", "must be a mapping of header names to values (e.g. "
               "Authorization: Bearer ${TOKEN})", raw, secret=True)
        return ()
    result: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in raw.items():
        path = (*r.path, "headers", name)
        problem = _header_name_problem(name, seen)
        if problem:
            r.problems.add(path, problem, at_key=True)
        seen.add(str(name).lower())
        before = len(r.problems.found)
        text = r.expand(value, path, secret=True)
        if len(r.problems.found) > before:
            continue  # an unset variable, already reported
        if isinstance(text, bool) or not isinstance(text, str | int | float):
            r.problems.add(path, "must be a text value, got (hidden)")
            continue
        text = r.problems.marks.written(path, text)
        if not _VALUE.fullmatch(text):
            r.problems.add(path, "must be printable ASCII text on one line, not empty, got "
                                 "(hidden)")
            continue
        if not problem:
            result.append((str(name), text))
    return tuple(result)


def _header_name_problem(name: object, seen: set[str]) -> str:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        return (f"must be a header name (letters, digits and !#$%&'*+-.^_`|~), got "
                f"{str(name)!r}")
    lower = name.lower()
    if lower in HOP_BY_HOP:
        return f"{name} is a hop-by-hop header: it never reaches the receiver; remove it"
    if lower.startswith(OWN_PREFIX):
        return (f"{name}: X-Gateway-* headers are the gateway's own ({SIGNATURE_HEADER}, "
                f"{TIMESTAMP_HEADER}); choose another name")
    if lower in PER_REQUEST:
        return f"{name} is set by the gateway for each request; remove it"
    if lower in seen:
        return f"{name} is given twice (header names ignore case)"
    return ""


class Webhook(DestinationBase[WebhookOptions]):
    """A `webhook` destination."""

    options_type = WebhookOptions

    def address(self, context: Context) -> tuple[str, str]:
        return context.pixel_id, context.test_event_code

    def batch_key(self, row: ClaimedRow) -> tuple[str, ...]:
        return ()  # each event carries its pixel id and test code: any rows share a request

    @property
    def endpoint(self) -> str:
        return shown_url(self.options.url)

    @property
    def target(self) -> str:
        return f"the webhook at {URL(self.options.url).host}"

    def describe_batch(self, rows: Sequence[ClaimedRow]) -> str:
        return f"POST {len(rows)} events ({summarize(rows)}) to {self.endpoint}, signed"

    async def send(self, session: aiohttp.ClientSession, rows: Sequence[ClaimedRow]) -> None:
        events = batch_events(rows, self.name)
        options = self.options
        url = URL(options.url)
        scrub = [options.secret, *(value for _, value in options.headers), url.query_string,
                 url.path if len(url.path) > 1 else "", *sensitive_values(events)]
        await post_batch(session, options.url, batch_body(events), secret=options.secret,
                         headers=dict(options.headers), timeout=self.settings.timeout,
                         scrub=scrub)


WEBHOOK = WebhookType()
