"""`type: echo`, a destination type that exists only in the tests: the seam's proof that a new
platform is one module. It posts `{"events": [...], "click_ids": [...]}` to `url`, with a
`secret` header; accepts any event but those named `Refused` (unlike Meta); answers: 2xx done,
401 refused credentials, 429 rate limit, 400 refused events, else retry."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from gateway.configreader import Reader
from gateway.destinations import DestinationBase, summarize
from gateway.errors import Permanent, RateLimited, Retryable, TokenRejected
from gateway.model import Context
from gateway.settings import DestinationSettings
from gateway.storage import ClaimedRow


@dataclass(frozen=True)
class EchoOptions:
    url: str = ""
    secret: str = field(default="", repr=False)

    @property
    def credentials(self) -> tuple[str, ...]:
        return (self.secret,)

    @property
    def missing_credentials(self) -> str:
        return "" if self.secret else "no secret"

    @property
    def default_accepts(self) -> frozenset[str] | None:
        return None


class EchoType:
    name = "echo"
    vendor = "Echo"
    credentials_name = "secret"
    account_option = "url"
    secret_option = "secret"
    default_consent = "ads"
    takes_test_events = False
    max_batch_size = 50
    cookie_names = frozenset({"_echo"})

    def first_party_cookies(self, found: Mapping[str, str], *, now: float, labels: int,
                            click_ids: Mapping[str, str]) -> dict[str, str]:
        value = found.get("_echo", "")
        if not re.fullmatch(r"e1\.[0-9]+\.[a-z0-9]+", value):
            value = f"e1.{labels}.{secrets.token_hex(4)}"
        return {"_echo": value}

    def identities(self, user_data: Mapping[str, Any], default_country: str | None
                   ) -> dict[str, Any]:
        email = user_data.get("em")
        if not isinstance(email, str):
            return {}
        # Echo's own rule: hashed as typed, upper case (Meta's is trimmed lower case).
        return {"email": hashlib.sha256(email.strip().upper().encode()).hexdigest()}

    def validate(self, data: dict[str, Any], now: float) -> list[str]:
        return ["echo refuses events named Refused"] if data.get("event_name") == "Refused" \
            else []

    def expires(self, data: dict[str, Any]) -> float:
        return float("inf")

    def read_options(self, r: Reader) -> EchoOptions:
        return EchoOptions(url=r.string("url", pattern=r"https?://\S+", hint="an http(s) URL"),
                           secret=r.string("secret", "", secret=True, pattern=r"[A-Za-z0-9-]*",
                                           hint="letters, digits and '-'"))

    def build(self, settings: DestinationSettings) -> Echo:
        return Echo(settings, self)


class Echo(DestinationBase[EchoOptions]):
    options_type = EchoOptions

    def address(self, context: Context) -> tuple[str, str]:
        return context.pixel_id, ""

    def batch_key(self, row: ClaimedRow) -> tuple[str, ...]:
        return (row.pixel_id,)

    @property
    def endpoint(self) -> str:
        return self.options.url

    @property
    def target(self) -> str:
        return "the echo server"

    def describe_batch(self, rows: Sequence[ClaimedRow]) -> str:
        return f"POST {len(rows)} events ({summarize(rows)}) to {self.options.url}"

    async def send(self, session: aiohttp.ClientSession, rows: Sequence[ClaimedRow]) -> None:
        contexts = [orjson.loads(row.context) if row.context else {} for row in rows]
        body = {"events": [orjson.loads(row.payload) for row in rows],
                "click_ids": [context.get("click_ids", {}) for context in contexts],
                "cookies": [context.get("cookies", {}) for context in contexts],
                "identities": [context.get("identities", {}).get("echo", {})
                               for context in contexts]}
        try:
            async with session.post(self.options.url, json=body,
                                    headers={"X-Secret": self.options.secret}) as response:
                status = response.status
        except aiohttp.ClientError as exc:
            raise Retryable(f"connection failed: {type(exc).__name__}") from None
        if status < 300:
            return
        if status == 401:
            raise TokenRejected(f"HTTP {status}")
        if status == 429:
            raise RateLimited(f"HTTP {status}", min_delay=60)
        if status == 400:
            raise Permanent(f"HTTP {status}: refused")
        raise Retryable(f"HTTP {status}")


ECHO = EchoType()
