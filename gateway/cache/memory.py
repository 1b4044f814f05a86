"""The in-process backend: LRU bounded by entry count and bytes, with a TTL per entry.

Entries hold serialized protobuf bytes (never live objects a caller could mutate). Byte
accounting counts the payload, the key text and a fixed per-entry overhead, so the bound holds for
many small entries too.

Generations live in a dict keyed by scope. Every generation value comes from one
counter and is never reused; a scope without a record is at the current *floor*. When the dict
outgrows ``max_entries`` its oldest half is dropped and the floor moves to a fresh value, so a
forgotten generation can never make a stale entry match again (it only costs some misses).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from gateway import metrics
from gateway.cache.backend import Entry, Lookup
from gateway.cache.keys import CacheKey

__all__ = ["ENTRY_OVERHEAD_BYTES", "MemoryBackend"]

#: Approximate bytes of bookkeeping per entry (dict slot, tuple key, record object).
ENTRY_OVERHEAD_BYTES = 200


@dataclass(slots=True)
class _Record:
    entry: Entry
    expires: float
    generations: tuple[str, ...]
    size: int


class MemoryBackend:
    name = "memory"

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        self._bytes = 0
        #: scope -> generation; insertion order = age.
        self._generations: dict[str, str] = {}
        self._counter = itertools.count(1)
        self._floor = "0"

    @property
    def entries(self) -> int:
        return len(self._records)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _current(self, scopes: tuple[str, ...]) -> tuple[str, ...]:
        get, floor = self._generations.get, self._floor
        return tuple([get(s, floor) for s in scopes])  # a list: 0.3 µs to a generator's 0.5

    async def lookup(self, key: CacheKey) -> Lookup:
        generations = self._current(key.scopes)
        slot = (key.tenant, key.text)
        record = self._records.get(slot)
        if record is None:
            return Lookup(None, generations)
        if record.expires <= time.monotonic() or record.generations != generations:
            self._drop(slot)
            return Lookup(None, generations)
        self._records.move_to_end(slot)
        return Lookup(record.entry, generations)

    async def store(
        self, key: CacheKey, payload: bytes, ttl: float, generations: tuple[str, ...]
    ) -> None:
        if self._current(key.scopes) != generations:
            return  # a write happened while this answer was being fetched: it is already stale
        slot = (key.tenant, key.text)
        size = len(payload) + len(key.text) + len(key.tenant) + ENTRY_OVERHEAD_BYTES
        if size > self._max_bytes:
            return
        self._drop(slot)
        record = _Record(Entry(payload, time.time()), time.monotonic() + ttl, generations, size)
        self._records[slot] = record
        self._bytes += size
        metrics.CACHE_BYTES.inc(size)
        while len(self._records) > self._max_entries or self._bytes > self._max_bytes:
            oldest = next(iter(self._records))
            self._drop(oldest)
            metrics.CACHE_EVENTS.labels(self.name, "eviction").inc()

    async def invalidate(self, thread_id: str, scopes: Sequence[str]) -> None:
        for scope in scopes:
            self._generations.pop(scope, None)
            self._generations[scope] = str(next(self._counter))
        if len(self._generations) > self._max_entries:
            for slot in list(itertools.islice(self._generations, len(self._generations) // 2)):
                del self._generations[slot]
            self._floor = str(next(self._counter))

    def _drop(self, slot: tuple[str, str]) -> None:
        record = self._records.pop(slot, None)
        if record is not None:
            self._bytes -= record.size
            metrics.CACHE_BYTES.dec(record.size)

    async def close(self) -> None:
        metrics.CACHE_BYTES.dec(self._bytes)
        self._records.clear()
        self._bytes = 0
