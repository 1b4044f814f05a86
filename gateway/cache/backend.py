"""The contract every cache backend keeps (in-process and Redis).

A lookup returns the entry, if a usable one exists, together with the generations of the key's
scopes as seen *before* the upstream fetch. The fill stores the answer under those generations,
so an answer fetched across a concurrent write is stored under a generation that no longer
matches and is never served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from gateway.cache.keys import CacheKey

__all__ = ["Backend", "Entry", "Lookup"]


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored answer: serialized protobuf bytes and when it was stored (Unix seconds)."""

    payload: bytes
    stored_at: float


class Lookup(NamedTuple):
    """What a backend found for a key. A named tuple, not a frozen dataclass: one is made on
    every read, and the dataclass's ``__init__`` took 1.1 µs of it, this 0.3."""

    entry: Entry | None
    #: Generation of each of the key's scopes, in order, as seen by this lookup.
    generations: tuple[str, ...] = ()
    #: False when the backend could not be asked (Redis down or slow): the call bypasses it.
    available: bool = True


class Backend(Protocol):
    #: Metrics label ("memory" or "redis").
    name: str

    async def lookup(self, key: CacheKey) -> Lookup: ...

    async def store(
        self, key: CacheKey, payload: bytes, ttl: float, generations: tuple[str, ...]
    ) -> None: ...

    async def invalidate(self, thread_id: str, scopes: Sequence[str]) -> None:
        """Bump the scopes' generations. Not per tenant: thread ids are the upstream's, and a
        write seen through one profile must not leave another profile's view stale (a
        generation only ever turns entries into misses, so sharing it leaks nothing)."""

    async def close(self) -> None: ...
