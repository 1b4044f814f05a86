from __future__ import annotations

import asyncio

from gateway import metrics
from gateway.cache.keys import make_key, message_scope
from gateway.cache.memory import ENTRY_OVERHEAD_BYTES, MemoryBackend


def key(n: int, scopes: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return make_key("t", "getMessageFile", ("th", f"m{n}", "f"), {}, scopes)


def gauge() -> float:
    return metrics.REGISTRY.get_sample_value("gateway_cache_bytes") or 0.0


async def test_memory_backend_stores_and_returns_bytes() -> None:
    backend = MemoryBackend(max_entries=10, max_bytes=10_000)
    await backend.store(key(1), b"abc", 60, ())
    found = await backend.lookup(key(1))
    assert found.entry is not None and found.entry.payload == b"abc"
    assert (await backend.lookup(key(2))).entry is None


async def test_memory_backend_over_max_entries_evicts_least_recently_used() -> None:
    backend = MemoryBackend(max_entries=2, max_bytes=10_000)
    await backend.store(key(1), b"1", 60, ())
    await backend.store(key(2), b"2", 60, ())
    await backend.lookup(key(1))  # 1 is now the most recently used
    await backend.store(key(3), b"3", 60, ())
    assert backend.entries == 2
    assert (await backend.lookup(key(2))).entry is None
    assert (await backend.lookup(key(1))).entry is not None
    assert (await backend.lookup(key(3))).entry is not None


async def test_memory_backend_bytes_never_exceed_max_bytes() -> None:
    limit = 4 * (1000 + ENTRY_OVERHEAD_BYTES + 40)
    backend = MemoryBackend(max_entries=1000, max_bytes=limit)
    before = gauge()
    for n in range(50):
        await backend.store(key(n), b"x" * 1000, 60, ())
        assert backend.bytes <= limit
    assert 3 <= backend.entries <= 4
    assert gauge() - before == backend.bytes
    await backend.close()
    assert gauge() == before


async def test_memory_backend_entry_larger_than_max_bytes_is_not_stored() -> None:
    backend = MemoryBackend(max_entries=10, max_bytes=500)
    await backend.store(key(1), b"x" * 1000, 60, ())
    assert backend.entries == 0 and backend.bytes == 0


async def test_memory_backend_expired_entry_is_a_miss() -> None:
    backend = MemoryBackend(max_entries=10, max_bytes=10_000)
    await backend.store(key(1), b"abc", 0.05, ())
    await asyncio.sleep(0.1)
    assert (await backend.lookup(key(1))).entry is None
    assert backend.entries == 0


async def test_memory_backend_invalidated_scope_turns_entry_into_miss() -> None:
    backend = MemoryBackend(max_entries=10, max_bytes=10_000)
    k = key(1, (message_scope("th", "m1"),))
    seen = await backend.lookup(k)
    await backend.store(k, b"old", 60, seen.generations)
    assert (await backend.lookup(k)).entry is not None
    await backend.invalidate("th", [message_scope("th", "m1")])
    assert (await backend.lookup(k)).entry is None


async def test_memory_backend_fill_fetched_across_a_write_is_not_stored() -> None:
    backend = MemoryBackend(max_entries=10, max_bytes=10_000)
    k = key(1, (message_scope("th", "m1"),))
    seen = await backend.lookup(k)  # before the upstream fetch
    await backend.invalidate("th", [message_scope("th", "m1")])  # a write lands meanwhile
    await backend.store(k, b"stale", 60, seen.generations)
    assert backend.entries == 0


async def test_memory_backend_pruned_generations_never_revive_stale_entries() -> None:
    backend = MemoryBackend(max_entries=4, max_bytes=100_000)
    scope = message_scope("th", "m1")
    k = key(1, (scope,))
    seen = await backend.lookup(k)
    await backend.store(k, b"v0", 60, seen.generations)
    await backend.invalidate("th", [scope])
    for n in range(20):  # enough other writes to prune the scope's generation record
        await backend.invalidate("th", [message_scope("th", f"other{n}")])
    assert (await backend.lookup(k)).entry is None
