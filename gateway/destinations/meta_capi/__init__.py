"""`type: meta_capi`: Meta's Conversions API, one pixel per destination (or the pixel each hit
names), each with its own access token.

Options (beside the envelope every destination has): `pixel_id`, `access_token` (empty: dry
run), `graph_url`, `api_version`, `test_event_code`, `partner_agent`. Meta's rules for an event
(validate.py) decide what this type accepts; the request and Meta's error table live in
sender.py. docs/meta-capi.md has the facts both rely on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from ...model import PIXEL_ID, Context
from ..base import CannotTest, DestinationBase, summarize
from .check import check_token, test_event_body
from .sender import batch_body, post_batch
from .validate import expiry, validate_event

if TYPE_CHECKING:
    from ...configreader import Reader
    from ...settings import DestinationSettings
    from ...storage import ClaimedRow

__all__ = ["META_CAPI", "MetaCapi", "MetaCapiOptions", "MetaCapiType"]

MAX_BATCH_SIZE = 1000  # Meta's limit per request


@dataclass(frozen=True)
class MetaCapiOptions:
    pixel_id: str = ""  # empty: the pixel id each event was received for
    access_token: str = field(default="", repr=False)
    graph_url: str = "https://graph.facebook.com"
    api_version: str = "v26.0"
    test_event_code: str = ""
    partner_agent: str = ""  # identifies the integration to Meta (sent with every batch)

    @property
    def credentials(self) -> tuple[str, ...]:
        return (self.access_token,)

    @property
    def missing_credentials(self) -> str:
        return "" if self.access_token else "no access_token"

    @property
    def default_accepts(self) -> frozenset[str] | None:
        return frozenset({self.pixel_id}) if self.pixel_id else None


class MetaCapiType:
    name = "meta_capi"
    vendor = "Meta"
    credentials_name = "access token"
    account_option = "pixel_id"
    secret_option = "access_token"
    default_consent = "ads"
    takes_test_events = True
    max_batch_size = MAX_BATCH_SIZE
    # Meta's own _fbp/_fbc are the event model's (user_data.fbp/fbc): identity/cookies.py.
    cookie_names: frozenset[str] = frozenset()

    def first_party_cookies(self, found: Mapping[str, str], *, now: float, labels: int,
                            click_ids: Mapping[str, str]) -> dict[str, str]:
        return {}

    def identities(self, user_data: Mapping[str, Any], default_country: str | None
                   ) -> dict[str, Any]:
        return {}  # the event's user_data is hashed Meta's way already

    def validate(self, data: dict[str, Any], now: float) -> list[str]:
        return validate_event(data, now)

    def expires(self, data: dict[str, Any]) -> float:
        return expiry(data)

    def read_options(self, r: Reader) -> MetaCapiOptions:
        d = MetaCapiOptions()
        return MetaCapiOptions(
            pixel_id=r.string("pixel_id", d.pixel_id, pattern=f"({PIXEL_ID.pattern})?",
                              hint="the pixel's numeric id (or empty: relay to the pixel each "
                                   "hit names)"),
            access_token=r.string("access_token", d.access_token, secret=True,
                                  pattern=r"[A-Za-z0-9_|.-]*", hint="a Meta access token"),
            graph_url=r.string("graph_url", d.graph_url, pattern=r"https?://[^\s?#]+",
                               hint="an http(s) base URL such as https://graph.facebook.com"
                               ).rstrip("/"),
            api_version=r.string("api_version", d.api_version, pattern=r"v[0-9]+\.[0-9]+",
                                 hint="a Graph API version such as v26.0"),
            test_event_code=r.string("test_event_code", d.test_event_code,
                                     pattern=r"[A-Za-z0-9_-]{0,64}",
                                     hint="a code from Events Manager's Test events, e.g. "
                                          "TEST1234"),
            partner_agent=r.string("partner_agent", d.partner_agent,
                                   pattern=r"[A-Za-z0-9_.:/ -]{0,64}",
                                   hint="a short name of the integration, e.g. tag-gateway"),
        )

    def build(self, settings: DestinationSettings) -> MetaCapi:
        return MetaCapi(settings, self)


class MetaCapi(DestinationBase[MetaCapiOptions]):
    """A `meta_capi` destination."""

    options_type = MetaCapiOptions

    def address(self, context: Context) -> tuple[str, str]:
        return (self.options.pixel_id or context.pixel_id,
                context.test_event_code or self.options.test_event_code)

    def batch_key(self, row: ClaimedRow) -> tuple[str, ...]:
        # One request per pixel, test code and forwarded top-level fields.
        return row.pixel_id, row.test_event_code, row.request_fields

    def events_url(self, pixel_id: str) -> str:
        """The events endpoint, without the token."""
        return f"{self.options.graph_url}/{self.options.api_version}/{pixel_id}/events"

    @property
    def endpoint(self) -> str:
        return f"{self.options.graph_url}/{self.options.api_version}"

    @property
    def target(self) -> str:
        pixel_id = self.options.pixel_id
        return f"pixel {pixel_id}" if pixel_id else "the pixel each hit names"

    def describe_batch(self, rows: Sequence[ClaimedRow]) -> str:
        code = rows[0].test_event_code
        return (f"POST {len(rows)} events ({summarize(rows)}) to "
                f"{self.events_url(rows[0].pixel_id)}"
                + (f" with test_event_code {code}" if code else ""))

    async def send(self, session: aiohttp.ClientSession, rows: Sequence[ClaimedRow]) -> str:
        first = rows[0]
        body = batch_body(rows, first.test_event_code, self.options.partner_agent)
        return await post_batch(session, self.events_url(first.pixel_id), self.options.access_token,
                         body, self.settings.timeout)

    async def check_token(self, session: aiohttp.ClientSession) -> str:
        """Read the pixel with the token (check.py): nothing is recorded."""
        return await check_token(session, self.endpoint, self.options.pixel_id,
                                 self.options.access_token, self.settings.timeout)

    async def send_test_event(self, session: aiohttp.ClientSession) -> str:
        """One PageView with the destination's test_event_code (check.py)."""
        body = test_event_body(self.options.test_event_code, self.options.partner_agent,
                               time.time())
        if not self.options.pixel_id:
            raise CannotTest("set pixel_id: a test event goes to one pixel")
        return await post_batch(session, self.events_url(self.options.pixel_id),
                                self.options.access_token, body, self.settings.timeout)


META_CAPI = MetaCapiType()
