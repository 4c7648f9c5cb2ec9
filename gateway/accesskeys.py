"""Access keys for the server ingress: who may send events for which pixel, and how often a
client may get it wrong.

Only the SHA-256 of each key is configured. A presented key is hashed and compared with every
configured digest (`hmac.compare_digest`, no early exit), so the work does not depend on which
key matches, or whether one does. Refusals are logged and counted without the key; a client IP
with `FAILURE_LIMIT` failures within `FAILURE_WINDOW_SECONDS` is answered 429, before its body is
read, until the oldest of those failures leaves the window. A failure is any refusal before the
request proved its key: a bad or missing key, and a body too large or unreadable to find one in.
A client that proved a key within `TRUSTED_SECONDS` is not throttled: backends behind one NAT
share an address, and one misconfigured backend must not lock out the others.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from prometheus_client import CollectorRegistry, Counter

from .errors import HitError
from .settings import AccessKey

__all__ = [
    "FAILURE_LIMIT",
    "FAILURE_WINDOW_SECONDS",
    "TRUSTED_SECONDS",
    "AccessDenied",
    "AccessGuard",
    "FailureThrottle",
    "KeyRing",
    "KeysInForce",
    "bearer_token",
    "key_sha256",
    "new_key",
]

log = logging.getLogger(__name__)

FAILURE_LIMIT = 5
FAILURE_WINDOW_SECONDS = 60.0
TRUSTED_SECONDS = 600.0
MAX_TRACKED_CLIENTS = 10_000


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an `Authorization: Bearer <token>` header, or "" without one."""
    given = headers.get("Authorization", "")
    return given.removeprefix("Bearer ").strip() if given.startswith("Bearer ") else ""


def new_key() -> str:
    """A new random key (256 bits), for the server ingress or the admin."""
    return secrets.token_urlsafe(32)


def key_sha256(key: str) -> str:
    """The digest configured for a key (what `access_keys[].sha256` holds)."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


class AccessDenied(HitError):
    """The request may not send events; `label` is the metric reason, never the key."""

    def __init__(self, reason: str, status: int, label: str,
                 retry_after: int | None = None) -> None:
        super().__init__(reason, status)
        self.label = label
        self.retry_after = retry_after


class KeyRing:
    """The configured keys, matched by digest in constant work."""

    def __init__(self, keys: Sequence[AccessKey]) -> None:
        self._keys = tuple(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def match(self, presented: str) -> AccessKey | None:
        digest = key_sha256(presented)
        found: AccessKey | None = None
        for key in self._keys:
            # Every digest is compared, whatever matched before: no timing hint of which key.
            if hmac.compare_digest(digest, key.sha256) and found is None:
                found = key
        return found


class KeysInForce:
    """The keys the server ingress accepts: config.yaml's (as the live snapshot has them, so a
    reload changes them) and those made in the console (set by its record listener, so a
    change on any worker or node arrives within about a second). Called for each request: the
    same tuple comes back until either part changes, so the ring is rebuilt only then."""

    def __init__(self, configured: Callable[[], Sequence[AccessKey]]) -> None:
        self._configured = configured
        self.console: tuple[AccessKey, ...] = ()
        self._of: tuple[Sequence[AccessKey], tuple[AccessKey, ...]] | None = None
        self._all: tuple[AccessKey, ...] = ()

    def __call__(self) -> tuple[AccessKey, ...]:
        configured = self._configured()
        if self._of is None or configured is not self._of[0] or self.console is not self._of[1]:
            self._of = (configured, self.console)
            self._all = (*configured, *self.console)
        return self._all


class FailureThrottle:
    """Recent failures per client IP, in memory and bounded (least recently failing dropped).

    Each client keeps at most its last `limit` failure times; it is blocked while the oldest of
    them is within `window` seconds, unless it proved a key within `trusted` seconds."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        limit: int = FAILURE_LIMIT,
        window: float = FAILURE_WINDOW_SECONDS,
        trusted: float = TRUSTED_SECONDS,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._trusted = trusted
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._succeeded: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again (at least 1), or None if it is not blocked."""
        times = self._failures.get(client)
        if times is None or len(times) < self._limit:
            return None
        now = self._clock()
        if now - self._succeeded.get(client, -math.inf) < self._trusted:
            return None
        wait = times[0] + self._window - now
        return max(1, math.ceil(wait)) if wait > 0 else None

    def record_failure(self, client: str) -> None:
        times = self._failures.get(client)
        if times is None:
            times = self._failures[client] = deque(maxlen=self._limit)
        times.append(self._clock())
        self._failures.move_to_end(client)
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)

    def forgive(self, client: str) -> None:
        """A client that got its key right starts afresh, and is trusted for a while."""
        self._failures.pop(client, None)
        self._succeeded[client] = self._clock()
        self._succeeded.move_to_end(client)
        while len(self._succeeded) > self._max_clients:
            self._succeeded.popitem(last=False)


class AccessGuard:
    """Decides whether a request may send events for a pixel; logs and counts refusals."""

    def __init__(self, keys: Callable[[], Sequence[AccessKey]], registry: CollectorRegistry,
                 clock: Callable[[], float]) -> None:
        """`keys`: the keys in force, asked for each request (a config reload changes them)."""
        self._keys = keys
        self._ring = KeyRing(())
        self._ring_of: Sequence[AccessKey] | None = None
        self.throttle = FailureThrottle(clock)
        self.denied = Counter(
            "gateway_access_denied", "Server ingress requests refused, by reason (missing_key, "
            "invalid_key, out_of_scope, throttled, bad_request: refused before a key was "
            "proved, busy: too many large bodies without a proved key at once).", ["reason"],
            registry=registry,
        )

    @property
    def keys(self) -> KeyRing:
        current = self._keys()
        if current is not self._ring_of:
            self._ring, self._ring_of = KeyRing(current), current
        return self._ring

    def admit(self, client: str, trace: str) -> None:
        """Refuse (429) a client that failed too often recently, before reading its request."""
        wait = self.throttle.retry_after(client)
        if wait is not None:
            # Counted, but logged only when the block starts: a blocked client that keeps
            # trying must not flood the log.
            self.denied.labels("throttled").inc()
            raise AccessDenied(
                f"too many requests with a missing or wrong access key; retry in {wait} s",
                429, "throttled", retry_after=wait,
            )

    def screen(self, candidates: Sequence[str], pixel_id: str, client: str, trace: str) -> None:
        """Refuse (401) a body none of whose candidate keys is valid, before it is parsed."""
        if not candidates:
            self._missing(client, pixel_id, trace)
        if not any(self.keys.match(candidate) for candidate in candidates):
            self._invalid(client, pixel_id, trace)

    def busy(self) -> AccessDenied:
        """Too many large bodies are being read without a proved key: come back shortly."""
        self.denied.labels("busy").inc()
        return AccessDenied("too many large requests without a proven access key at once; "
                            "retry shortly, or send the key in the query string or an "
                            "Authorization header", 503, "busy", retry_after=1)

    def failed(self, client: str, pixel_id: str, trace: str, why: str) -> None:
        """A request refused before it proved a key (unreadable, too large): counts too."""
        self._fail(client, pixel_id, trace, "bad_request", why)

    def authorize(self, presented: str, pixel_id: str, client: str, trace: str) -> AccessKey:
        """The key that allows this pixel, or AccessDenied (401 or 403)."""
        if not presented:
            self._missing(client, pixel_id, trace)
        key = self.keys.match(presented)
        if key is None:
            self._invalid(client, pixel_id, trace)
        self.throttle.forgive(client)
        if key.pixels is not None and pixel_id not in key.pixels:
            self._refuse(client, pixel_id, trace, "out_of_scope",
                         f"access key {key.name!r} is not allowed for this pixel")
            raise AccessDenied(
                f"this access key may not send events for pixel {pixel_id}", 403,
                "out_of_scope",
            )
        return key

    def _missing(self, client: str, pixel_id: str, trace: str) -> NoReturn:
        self._fail(client, pixel_id, trace, "missing_key", "no access key")
        raise AccessDenied(
            "an access key is required: send it as access_token (query or body), accessKey "
            "(body) or an `Authorization: Bearer` header", 401, "missing_key",
        )

    def _invalid(self, client: str, pixel_id: str, trace: str) -> NoReturn:
        self._fail(client, pixel_id, trace, "invalid_key", "unknown access key")
        raise AccessDenied("the access key is not valid", 401, "invalid_key")

    def _fail(self, client: str, pixel_id: str, trace: str, label: str, why: str) -> None:
        """A missing or wrong key: counts towards the client's throttle."""
        self.throttle.record_failure(client)
        self._refuse(client, pixel_id, trace, label, why)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            log.warning("server ingress: %s is throttled for %d s after %d failed requests",
                        client, wait, FAILURE_LIMIT)

    def _refuse(self, client: str, pixel_id: str, trace: str, label: str, why: str) -> None:
        self.denied.labels(label).inc()
        log.warning("server ingress refused a request from %s for pixel %s: %s (fbtrace_id %s)",
                    client, pixel_id, why, trace)
