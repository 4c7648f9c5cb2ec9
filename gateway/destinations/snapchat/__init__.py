"""`type: snapchat`: Snap's Conversions API v3, one Snap Pixel per destination.

Options (beside the envelope every destination has): `pixel_id`, `access_token` (empty: dry
run), `test_mode` (send to Snap's validate endpoint: checked, never counted) and `api_url`.
Events are Meta-shaped in the outbox; events.py turns each into Snap's (names, action
sources, user_data with `sc_click_id` from the `ScCid` click id and `sc_cookie1` from the
`_scid` cookie this type keeps or mints); sender.py posts a batch and classifies Snap's
answer. docs/destinations.md has the facts both rely on.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from ...model import Context
from ..base import DestinationBase, summarize
from .check import validate_test_event
from .events import expiry, snap_event, validate_event
from .sender import post_events

if TYPE_CHECKING:
    from ...configreader import Reader
    from ...settings import DestinationSettings
    from ...storage import ClaimedRow

__all__ = ["SNAPCHAT", "Snapchat", "SnapchatOptions", "SnapchatType"]

MAX_BATCH_SIZE = 2000  # Snap's limit of events per request
COOKIE = "_scid"  # Snap's first-party cookie: a UUID, sent as user_data.sc_cookie1
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class SnapchatOptions:
    pixel_id: str = ""
    access_token: str = field(default="", repr=False)
    test_mode: bool = False  # POST to /events/validate: Snap checks the events, counts none
    api_url: str = "https://tr.snapchat.com"

    @property
    def credentials(self) -> tuple[str, ...]:
        # A 403 for a wrong pixel is lifted by correcting it, as for a token.
        return (self.access_token, self.pixel_id)

    @property
    def missing_credentials(self) -> str:
        return "" if self.access_token else "no access_token"

    @property
    def default_accepts(self) -> frozenset[str] | None:
        return None  # every incoming (Meta) pixel id


class SnapchatType:
    name = "snapchat"
    vendor = "Snap"
    credentials_name = "access token"
    account_option = "pixel_id"
    secret_option = "access_token"
    default_consent = "ads"
    takes_test_events = False
    max_batch_size = MAX_BATCH_SIZE
    cookie_names = frozenset({COOKIE})

    def first_party_cookies(self, found: Mapping[str, str], *, now: float, labels: int,
                            click_ids: Mapping[str, str]) -> dict[str, str]:
        """A valid `_scid` is kept (set again: renewed); else a new one is minted, a UUID as
        Snap's pixel and server-side tag make it."""
        value = found.get(COOKIE, "")
        if not UUID.fullmatch(value):
            value = str(uuid.uuid4())
        return {COOKIE: value}

    def identities(self, user_data: Mapping[str, Any], default_country: str | None
                   ) -> dict[str, Any]:
        return {}  # Snap normalizes em/ph/names as Meta does: the event's hashes serve

    def validate(self, data: dict[str, Any], now: float) -> list[str]:
        return validate_event(data, now)

    def expires(self, data: dict[str, Any]) -> float:
        return expiry(data)

    def read_options(self, r: Reader) -> SnapchatOptions:
        d = SnapchatOptions()
        return SnapchatOptions(
            pixel_id=r.string("pixel_id", pattern=UUID.pattern,
                              hint="a Snap Pixel id from Events Manager, a UUID such as "
                                   "0b3e6e5c-1f2a-4c3d-9e8f-0123456789ab"),
            access_token=r.string("access_token", d.access_token, secret=True,
                                  pattern=r"[A-Za-z0-9_.+/=-]*",
                                  hint="a Conversions API token from Snap's Business Manager"),
            test_mode=r.boolean("test_mode", d.test_mode),
            api_url=r.string("api_url", d.api_url, pattern=r"https?://[^\s?#]+",
                             hint="an http(s) base URL such as https://tr.snapchat.com"
                             ).rstrip("/"),
        )

    def build(self, settings: DestinationSettings) -> Snapchat:
        return Snapchat(settings, self)


class Snapchat(DestinationBase[SnapchatOptions]):
    """A `snapchat` destination."""

    options_type = SnapchatOptions

    def address(self, context: Context) -> tuple[str, str]:
        # Meta's test_event_code means nothing to Snap: test_mode decides instead.
        return self.options.pixel_id, ""

    def batch_key(self, row: ClaimedRow) -> tuple[str, ...]:
        return (row.pixel_id,)

    def events_url(self, pixel_id: str, validate: bool = False) -> str:
        """The events endpoint (validate in test mode, or when asked), without the token."""
        url = f"{self.options.api_url}/v3/{pixel_id}/events"
        return url + "/validate" if validate or self.options.test_mode else url

    @property
    def endpoint(self) -> str:
        return f"{self.options.api_url}/v3"

    @property
    def target(self) -> str:
        return f"Snap Pixel {self.options.pixel_id}" + (
            " (test mode: validate only)" if self.options.test_mode else "")

    def describe_batch(self, rows: Sequence[ClaimedRow]) -> str:
        return (f"POST {len(rows)} events ({summarize(rows)}) to "
                f"{self.events_url(self.options.pixel_id)}")

    async def send(self, session: aiohttp.ClientSession, rows: Sequence[ClaimedRow]) -> None:
        body = orjson.dumps({"data": [
            snap_event(orjson.loads(row.payload), orjson.loads(row.context) if row.context
                       else {}) for row in rows]})
        await post_events(session, self.events_url(self.options.pixel_id),
                          self.options.access_token,
                          body, self.settings.timeout)

    async def check_token(self, session: aiohttp.ClientSession) -> str:
        """One test event to the validate endpoint (check.py): nothing is counted."""
        answer = await self.send_test_event(session)
        return f"the token may send to {self.target}: {answer}"

    async def send_test_event(self, session: aiohttp.ClientSession) -> str:
        """One PAGE_VIEW to `/events/validate` (check.py), whatever test_mode says."""
        url = self.events_url(self.options.pixel_id, validate=True)
        return await validate_test_event(session, url, self.options.access_token, time.time(),
                                         self.settings.timeout)


SNAPCHAT = SnapchatType()
