"""`type: tiktok`: TikTok's Events API 2.0 for one web pixel, with its own access token.

Options (beside the envelope every destination has): `pixel_code` (required), `access_token`
(empty: dry run), `test_event_code`, `api_url`. The body is built in wire.py, TikTok's answer is
classified in sender.py, TikTok's rules for an event are in validate.py, and the `_ttp` cookie
and TikTok's own hashes in identity.py. docs/destinations.md has the facts they rely on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from ...model import Context
from ..base import DestinationBase, summarize
from .check import send_test_event
from .identity import TTP_COOKIE, identities, tiktok_cookies
from .sender import post_batch
from .validate import expiry, validate_event
from .wire import batch_body

if TYPE_CHECKING:
    from ...configreader import Reader
    from ...settings import DestinationSettings
    from ...storage import ClaimedRow

__all__ = ["TIKTOK", "TikTok", "TikTokOptions", "TikTokType"]

MAX_BATCH_SIZE = 1000  # TikTok's limit of events per Events API request
TRACK_PATH = "/open_api/v1.3/event/track/"


@dataclass(frozen=True)
class TikTokOptions:
    pixel_code: str = ""
    access_token: str = field(default="", repr=False)
    test_event_code: str = ""
    api_url: str = "https://business-api.tiktok.com"

    @property
    def credentials(self) -> tuple[str, ...]:
        # A TikTok token is issued for a pixel: a new pixel code is as new as a new token
        # (either lifts a pause for refused credentials).
        return (self.access_token, self.pixel_code)

    @property
    def missing_credentials(self) -> str:
        return "" if self.access_token else "no access_token"

    @property
    def default_accepts(self) -> frozenset[str] | None:
        return None  # every incoming (Meta) pixel id


class TikTokType:
    name = "tiktok"
    vendor = "TikTok"
    credentials_name = "access token"
    account_option = "pixel_code"
    secret_option = "access_token"
    # An advertising platform: its events need the visitor's ads consent (main's consent
    # protocol, added after this branch started, asks every type for this).
    default_consent = "ads"
    takes_test_events = False
    max_batch_size = MAX_BATCH_SIZE
    cookie_names: frozenset[str] = frozenset({TTP_COOKIE})

    def first_party_cookies(self, found: Mapping[str, str], *, now: float, labels: int,
                            click_ids: Mapping[str, str]) -> dict[str, str]:
        return tiktok_cookies(found, now=now, labels=labels)

    def identities(self, user_data: Mapping[str, Any], default_country: str | None
                   ) -> dict[str, Any]:
        return identities(user_data, default_country)

    def validate(self, data: dict[str, Any], now: float) -> list[str]:
        return validate_event(data, now)

    def expires(self, data: dict[str, Any]) -> float:
        return expiry(data)

    def read_options(self, r: Reader) -> TikTokOptions:
        d = TikTokOptions()
        return TikTokOptions(
            pixel_code=r.string("pixel_code", pattern=r"[A-Za-z0-9]{6,64}",
                                hint="the pixel code from TikTok Events Manager (letters and "
                                     "digits, e.g. CXXXXXXXXXXXXXXXXXXX)"),
            access_token=r.string("access_token", d.access_token, secret=True,
                                  pattern=r"[A-Za-z0-9_.-]*",
                                  hint="an Events API access token (letters, digits, '_', '.', "
                                       "'-')"),
            test_event_code=r.string("test_event_code", d.test_event_code,
                                     pattern=r"[A-Za-z0-9_-]{0,64}",
                                     hint="a code from Events Manager's Test events, e.g. "
                                          "TEST12345"),
            api_url=r.string("api_url", d.api_url, pattern=r"https?://[^\s/?#]+/?",
                             hint="an http(s) base URL without a path, such as "
                                  "https://business-api.tiktok.com").rstrip("/"),
        )

    def build(self, settings: DestinationSettings) -> TikTok:
        return TikTok(settings, self)


class TikTok(DestinationBase[TikTokOptions]):
    """A `tiktok` destination."""

    options_type = TikTokOptions

    def address(self, context: Context) -> tuple[str, str]:
        # Only the destination's own test code: a server event's test_event_code is Meta's.
        return self.options.pixel_code, self.options.test_event_code

    def batch_key(self, row: ClaimedRow) -> tuple[str, ...]:
        return row.pixel_id, row.test_event_code

    @property
    def track_url(self) -> str:
        return self.options.api_url + TRACK_PATH

    @property
    def endpoint(self) -> str:
        return self.track_url

    @property
    def target(self) -> str:
        return f"pixel {self.options.pixel_code}"

    def describe_batch(self, rows: Sequence[ClaimedRow]) -> str:
        code = rows[0].test_event_code
        return (f"POST {len(rows)} events ({summarize(rows)}) to {self.track_url} for pixel "
                f"{self.options.pixel_code}"
                + (f" with test_event_code {code}" if code else ""))

    async def send(self, session: aiohttp.ClientSession, rows: Sequence[ClaimedRow]) -> None:
        # The destination's pixel code now (a corrected code applies to queued events too).
        body = batch_body(rows, self.options.pixel_code, rows[0].test_event_code)
        await post_batch(session, self.track_url, self.options.access_token, body,
                         self.settings.timeout)

    async def send_test_event(self, session: aiohttp.ClientSession) -> str:
        """One Pageview with the destination's test_event_code (check.py)."""
        return await send_test_event(session, self.track_url, self.options.access_token,
                                     self.options.pixel_code, self.options.test_event_code,
                                     time.time(), self.settings.timeout)


TIKTOK = TikTokType()
