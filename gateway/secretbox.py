"""Secrets at rest: what the console stores for a destination (its token) is sealed with
AES-256-GCM under a key from the environment (`GATEWAY_SECRET_KEY`), never kept in plaintext.

A sealed secret is `v1` (the format), the key's id (the first 4 bytes of its SHA-256: it says
which key sealed it, so a later version can hold an old key beside a new one and re-seal), a
random 12-byte nonce and the ciphertext with its tag. The record's kind and name are the
associated data: a sealed token copied onto another record does not open there. Without the key
nothing is sealed (the caller refuses to store the secret); with another key, or a damaged
ciphertext, `open` raises `Unreadable` and the secret is treated as unreadable, never as empty.
`tag-gateway keys secret` prints a new key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# A key as `GATEWAY_SECRET_KEY` takes it is any new random key (32 bytes, URL-safe base64).
from .accesskeys import new_key

__all__ = ["KEY_ENV", "MAKE_A_KEY", "SecretBox", "Unreadable", "new_key"]

KEY_ENV = "GATEWAY_SECRET_KEY"
MAKE_A_KEY = (f"{KEY_ENV} is not set (or is not 32 bytes in base64): make a key with "
              f"`tag-gateway keys secret`, set {KEY_ENV} to it in the environment of every "
              "gateway process, and restart them")
_FORMAT = b"v1"
_ID_BYTES = 4
_NONCE_BYTES = 12


class Unreadable(Exception):
    """A sealed secret that this key cannot open (another key, or damaged)."""


def _decode(text: str) -> bytes | None:
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_")
                                       + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


class SecretBox:
    def __init__(self, key: bytes | None) -> None:
        self._aead = AESGCM(key) if key else None
        self.key_id = hashlib.sha256(key).digest()[:_ID_BYTES] if key else b""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SecretBox:
        """The box of `GATEWAY_SECRET_KEY`; without a (valid) key, one that seals nothing."""
        given = (os.environ if env is None else env).get(KEY_ENV, "")
        return cls(_decode(given) if given else None)

    @property
    def can_seal(self) -> bool:
        return self._aead is not None

    def seal(self, secret: str, kind: str, name: str) -> bytes:
        """The secret sealed for record `kind`/`name`; the caller checks `can_seal` first."""
        if self._aead is None:
            raise Unreadable(MAKE_A_KEY)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return (_FORMAT + self.key_id + nonce
                + self._aead.encrypt(nonce, secret.encode("utf-8"), _bound_to(kind, name)))

    def open(self, sealed: bytes, kind: str, name: str) -> str:
        """The secret of record `kind`/`name`; Unreadable (with why, never the secret) when
        this key cannot open it."""
        if self._aead is None:
            raise Unreadable(f"the token cannot be read: {KEY_ENV} is not set")
        head = len(_FORMAT) + _ID_BYTES
        if not sealed.startswith(_FORMAT) or len(sealed) < head + _NONCE_BYTES + 16:
            raise Unreadable("the token cannot be read: not a sealed secret this version knows")
        if sealed[len(_FORMAT):head] != self.key_id:
            raise Unreadable(f"the token cannot be read: it was sealed with another "
                             f"{KEY_ENV} (key id {sealed[len(_FORMAT):head].hex()}, this one "
                             f"is {self.key_id.hex()})")
        nonce = sealed[head:head + _NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, sealed[head + _NONCE_BYTES:],
                                       _bound_to(kind, name))
        except InvalidTag:
            raise Unreadable("the token cannot be read: it does not open with this "
                             f"{KEY_ENV} for this destination (damaged or moved)") from None
        return plain.decode("utf-8")


def _bound_to(kind: str, name: str) -> bytes:
    return b"tag-gateway console secret\0" + kind.encode() + b"\0" + name.encode()
