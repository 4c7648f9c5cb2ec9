"""Console sessions, kept in the store: every worker and node sharing it knows every session.

The cookie holds a random token; the store keeps only its SHA-256 (kind `session`, named by that
digest), with when it was opened and last seen, and a fingerprint of the admin key it was opened
with: a new admin key ends every session. Each request reads its session by that name (one
primary-key read) and writes `seen` at most once every `SEEN_EVERY_SECONDS`, so a session opened
on one worker is good on all of them, and sign-out (deleting the record) ends it everywhere at
once. Sessions end after `IDLE_SECONDS` without a request and `ABSOLUTE_SECONDS` after sign-in;
ended ones are pruned (`prune`).

The CSRF token is an HMAC of the session's token: nothing more to store, a page can only learn
it from an authenticated answer (`GET admin/api/session`), and a cross-site form cannot send the
header it goes in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from ..accesskeys import key_sha256
from ..storage import Outbox

__all__ = ["ABSOLUTE_SECONDS", "COOKIE", "IDLE_SECONDS", "KIND", "SEEN_EVERY_SECONDS",
           "Session", "Sessions"]

COOKIE = "gw_console"
KIND = "session"  # the store's record kind
ABSOLUTE_SECONDS = 12 * 3600  # a session ends this long after sign-in, whatever happens
IDLE_SECONDS = 3600  # ... and after this long without a request (the open page polls)
SEEN_EVERY_SECONDS = 60  # a session's `seen` is written at most this often
MAX_TOKEN_CHARS = 100  # a cookie longer than any token we make is not looked up


@dataclass(frozen=True)
class Session:
    name: str  # the SHA-256 of its token: its record's name
    issued: int
    seen: int
    csrf: str

    @property
    def expires_at(self) -> int:
        return min(self.issued + ABSOLUTE_SECONDS, self.seen + IDLE_SECONDS)


def _same(expected: str, given: str) -> bool:
    """Constant-time, for any text a client sends (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(expected.encode("ascii"),
                               given.encode("utf-8", "surrogateescape"))


class Sessions:
    def __init__(self, outbox: Outbox, admin_key_sha256: str,
                 clock: Callable[[], float]) -> None:
        self._outbox = outbox
        # Which admin key a session was opened with, without keeping its digest in the store.
        self._admin = hashlib.sha256(b"tag-gateway console session\0"
                                     + admin_key_sha256.encode("ascii")).hexdigest()
        self._clock = clock

    async def start(self) -> tuple[Session, str]:
        """A new session, stored, and its token (for the cookie only)."""
        now = int(self._clock())
        token = secrets.token_urlsafe(32)
        session = Session(key_sha256(token), now, now, _csrf(token))
        await self._outbox.add_console_record(KIND, session.name, self._body(session))
        return session, token

    async def check(self, token: str | None) -> Session | None:
        """The session of a token that is stored, unexpired and of this admin key; else None."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        return await self._load(key_sha256(token), _csrf(token))

    async def active(self, session: Session) -> bool:
        """Whether `session` is still good (not signed out anywhere, not expired)."""
        return await self._load(session.name, session.csrf) is not None

    async def _load(self, name: str, csrf: str) -> Session | None:
        record = await self._outbox.console_record(KIND, name)
        if record is None:
            return None
        try:
            body = orjson.loads(record.body)
            issued, seen, admin = int(body["issued"]), int(body["seen"]), str(body["admin"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        session = Session(name, issued, seen, csrf)
        if not _same(self._admin, admin) or self._clock() >= session.expires_at:
            return None
        return session

    async def seen(self, session: Session) -> Session:
        """Note a request of `session` (written when its `seen` is getting old: at most a write
        a minute per session); the session as it is now."""
        now = int(self._clock())
        if now - session.seen < SEEN_EVERY_SECONDS:
            return session
        renewed = Session(session.name, session.issued, now, session.csrf)
        # Changes nothing when the session ended meanwhile.
        await self._outbox.update_console_record(KIND, session.name, self._body(renewed))
        return renewed

    async def end(self, session: Session) -> None:
        """Sign-out: the session ends on every worker and node at once."""
        await self._outbox.delete_console_record(KIND, session.name)

    async def prune(self) -> int:
        """Delete the sessions idle for longer than they may be (those past their absolute
        lifetime stop being seen, so they follow within IDLE_SECONDS); return how many."""
        return await self._outbox.prune_console_records(KIND, self._clock() - IDLE_SECONDS)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and _same(session.csrf, given or "")

    def _body(self, session: Session) -> str:
        return orjson.dumps({"issued": session.issued, "seen": session.seen,
                             "admin": self._admin}).decode()


def _csrf(token: str) -> str:
    digest = hmac.new(token.encode("utf-8", "surrogateescape"), b"tag-gateway console csrf",
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
