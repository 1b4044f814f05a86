"""The bytes stored in Redis: a versioned, self-describing, checksummed envelope.

Every value carries the (tenant, key) it was stored for and the generations it was fetched under,
so a reader checks that what came back is what it asked for. That check is the last line of
defence against a connection answering another caller's command (redis-py, CVE-2023-28858/9):
a value with someone else's tag is a miss, never a response.

Layout: ``MAGIC | version (1 byte) | blake2b-64 of the rest | stored_at (f64) | lengths (3×u32) |
generation count (u16) |
tenant | key | generations (comma-joined) | payload``.
"""

from __future__ import annotations

import hashlib
import struct

from gateway.cache.backend import Entry

__all__ = ["MAGIC", "SCHEMA_VERSION", "EnvelopeError", "decode", "encode"]

MAGIC = b"MGWC"
SCHEMA_VERSION = 1
_DIGEST_SIZE = 8
_HEAD = struct.Struct(">dIIIH")
_PREFIX = len(MAGIC) + 1 + _DIGEST_SIZE


class EnvelopeError(ValueError):
    """The value is not a usable entry for this request; ``reason`` says why (metrics, tests)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest()


def encode(
    tenant: str, key: str, generations: tuple[str, ...], payload: bytes, stored_at: float
) -> bytes:
    t, k, g = tenant.encode(), key.encode(), ",".join(generations).encode()
    body = _HEAD.pack(stored_at, len(t), len(k), len(g), len(generations)) + t + k + g + payload
    return MAGIC + bytes([SCHEMA_VERSION]) + _digest(body) + body


def decode(raw: bytes, tenant: str, key: str) -> tuple[Entry, tuple[str, ...]]:
    """The entry and its generations; EnvelopeError when corrupt, of another version or foreign."""
    if len(raw) < _PREFIX + _HEAD.size or raw[: len(MAGIC)] != MAGIC:
        raise EnvelopeError("corrupt")
    if raw[len(MAGIC)] != SCHEMA_VERSION:
        raise EnvelopeError("version")
    body = raw[_PREFIX:]
    if _digest(body) != raw[len(MAGIC) + 1 : _PREFIX]:
        raise EnvelopeError("corrupt")
    stored_at, t_len, k_len, g_len, g_count = _HEAD.unpack_from(body)
    offset = _HEAD.size
    end = offset + t_len + k_len + g_len
    if end > len(body):
        raise EnvelopeError("corrupt")
    stored_tenant = body[offset : offset + t_len]
    stored_key = body[offset + t_len : offset + t_len + k_len]
    if stored_tenant != tenant.encode() or stored_key != key.encode():
        raise EnvelopeError("foreign")
    joined = body[offset + t_len + k_len : end].decode(errors="replace")
    generations = tuple(joined.split(",")) if g_count else ()
    if len(generations) != g_count:
        raise EnvelopeError("corrupt")
    return Entry(body[end:], stored_at), generations
