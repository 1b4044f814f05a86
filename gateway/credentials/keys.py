"""Gateway keys: format, generation, hashing and the constant-time check.

A key reads ``mgw_<key id>_<secret>``: ``mgw_`` makes it recognisable to secret scanners and to
people, the key id (16 hex characters, 64 random bits) is public and names the key in the store,
logs and the CLI, and the secret is 32 random bytes (256 bits) in URL-safe base64. Only the SHA-256
of the whole key is stored. The key id lets the store find the one candidate record without ever
using the raw key as a lookup value; the hash is then compared with ``hmac.compare_digest``.

A 256-bit random secret needs no slow password hash: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "mgw_"
KEY_ID_HEX = 16
SECRET_BYTES = 32
#: len("mgw_") + 16 + len("_") + 43 (32 bytes in unpadded base64url).
KEY_LENGTH = len(PREFIX) + KEY_ID_HEX + 1 + 43
KEY_ID_END = len(PREFIX) + KEY_ID_HEX
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: ``secret`` is shown once and never stored."""

    key_id: str
    secret: str
    hash: str

    def __repr__(self) -> str:  # a key must not leak through a debug print or a traceback
        return f"NewKey(key_id={self.key_id!r})"


def hash_key(key: str) -> str:
    """Hex SHA-256 of the whole key (what the store keeps)."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def generate_key() -> NewKey:
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewKey(key_id=key_id, secret=key, hash=hash_key(key))


def parse_key_id(key: str) -> str | None:
    """The key id of a well-formed key, else None. The length is checked first, so a megabyte of
    input costs one ``len``. Plain string checks, no regex: this runs on every authenticated call.
    Beyond ASCII, the secret's characters are not checked here: the hash comparison refuses any
    other value."""
    if (len(key) != KEY_LENGTH or not key.startswith(PREFIX) or key[KEY_ID_END] != "_"
            or not key.isascii()):
        return None
    key_id = key[len(PREFIX):KEY_ID_END]
    return key_id if _HEX.issuperset(key_id) else None


def is_key_id(text: str) -> bool:
    return len(text) == KEY_ID_HEX and _HEX.issuperset(text)


def matches(key: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(hash_key(key), stored_hash)
