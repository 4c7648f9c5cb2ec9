"""Console sessions: signed tokens in an `HttpOnly`, `SameSite=Strict` cookie, and the CSRF
token bound to each.

A session token is `v1.<id>.<issued>.<seen>.<signature>`, signed with HMAC-SHA256. The signing
key is derived from a random secret and the admin key's digest: the admin key itself is never
in a cookie, changing it ends every session, and reading config.yaml (which holds only the
digest) is not enough to forge one. `serve --workers N` hands its workers one secret
(`SECRET_ENV`), so a session opened on one worker is good on the others; a single process makes
its own. Sessions end after `IDLE_SECONDS` without a request and `ABSOLUTE_SECONDS` after
sign-in, and with the process that made the secret (a restart asks everyone to sign in again).
Sign-out clears the cookie and refuses the token in this process for the rest of its life.

The CSRF token is an HMAC of the session id: a page can only learn it from an authenticated
answer (`GET admin/api/session`), and a cross-site form cannot send the header it goes in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ABSOLUTE_SECONDS", "COOKIE", "IDLE_SECONDS", "REFRESH_SECONDS", "SECRET_ENV",
           "Session", "Sessions", "process_secret"]

COOKIE = "gw_console"
ABSOLUTE_SECONDS = 12 * 3600  # a session ends this long after sign-in, whatever happens
IDLE_SECONDS = 3600  # ... and after this long without a request (the open page polls)
REFRESH_SECONDS = 60  # the cookie's `seen` is renewed at most this often
SECRET_ENV = "GATEWAY_CONSOLE_SECRET"  # set by the `serve --workers N` supervisor
_VERSION = "v1"


def process_secret() -> bytes:
    """The supervisor's secret when there is one (shared by its workers), else a new one."""
    given = os.environ.get(SECRET_ENV, "")
    if len(given) >= 64:
        try:
            return bytes.fromhex(given)
        except ValueError:
            pass
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class Session:
    id: str
    issued: int
    seen: int

    @property
    def expires_at(self) -> int:
        return min(self.issued + ABSOLUTE_SECONDS, self.seen + IDLE_SECONDS)


def _same(expected: str, given: str) -> bool:
    """Constant-time, for any text a client sends (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(expected.encode("ascii"),
                               given.encode("utf-8", "surrogateescape"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Sessions:
    def __init__(self, admin_key_sha256: str, secret: bytes,
                 clock: Callable[[], float]) -> None:
        self._key = hmac.new(secret, b"tag-gateway console session\0"
                             + admin_key_sha256.encode("ascii"), hashlib.sha256).digest()
        self._clock = clock
        self._revoked: dict[str, int] = {}  # signed-out session id -> when it would expire

    def start(self) -> tuple[Session, str]:
        """A new session and its token."""
        now = int(self._clock())
        session = Session(secrets.token_urlsafe(16), now, now)
        return session, self._token(session)

    def check(self, token: str | None) -> Session | None:
        """The session of a valid, unexpired, not signed-out token; else None."""
        if not token:
            return None
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != _VERSION:
            return None
        signed, signature = ".".join(parts[:4]), parts[4]
        if not _same(self._sign(signed), signature):
            return None
        try:
            session = Session(parts[1], int(parts[2]), int(parts[3]))
        except ValueError:
            return None
        now = self._clock()
        if not session.issued <= session.seen <= now + 60 or now >= session.expires_at:
            return None
        if session.id in self._revoked:
            return None
        return session

    def renewed(self, session: Session) -> tuple[Session, str] | None:
        """The session seen now and its new token, when its `seen` is getting old."""
        now = int(self._clock())
        if now - session.seen < REFRESH_SECONDS:
            return None
        renewed = Session(session.id, session.issued, now)
        return renewed, self._token(renewed)

    def revoke(self, session: Session) -> None:
        now = self._clock()
        self._revoked = {sid: end for sid, end in self._revoked.items() if end > now}
        self._revoked[session.id] = session.issued + ABSOLUTE_SECONDS

    def csrf(self, session: Session) -> str:
        return self._sign("csrf." + session.id)

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and _same(self.csrf(session), given or "")

    def _token(self, session: Session) -> str:
        signed = f"{_VERSION}.{session.id}.{session.issued}.{session.seen}"
        return f"{signed}.{self._sign(signed)}"

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode("utf-8", "surrogateescape"),
                             hashlib.sha256).digest())
