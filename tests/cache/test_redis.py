"""The Redis backend against a real Redis (see conftest.py), directly and through a fault proxy."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from gateway.cache.keys import CacheKey, make_key, message_scope
from gateway.cache.redis import FAILURES_TO_OPEN, RedisBackend
from tests.cache.proxy import TcpProxy

pytestmark = pytest.mark.redis


def backend_for(url: str, prefix: str, **overrides: float) -> RedisBackend:
    options: dict[str, float] = {"op_timeout": 0.5, "breaker_seconds": 5.0,
                                 "max_connections": 64, "max_ttl": 60.0}
    options.update(overrides)
    return RedisBackend(url=url, prefix=prefix, **options)  # type: ignore[arg-type]


@pytest.fixture
async def backend(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBackend]:
    b = backend_for(redis_url, redis_prefix)
    yield b
    await b.close()


def msg_key(tenant: str = "tenant-a", message: str = "m1") -> CacheKey:
    return make_key(tenant, "getMessage", ("thread_1", message), {}, (message_scope("thread_1", message),))


async def test_redis_backend_store_then_lookup_returns_payload(backend: RedisBackend) -> None:
    k = msg_key()
    seen = await backend.lookup(k)
    assert seen.available and seen.entry is None
    await backend.store(k, b"payload", 60, seen.generations)
    found = await backend.lookup(k)
    assert found.entry is not None and found.entry.payload == b"payload"
    assert abs(found.entry.stored_at - time.time()) < 5


async def test_redis_backend_corrupted_value_is_a_miss_and_deleted(
    backend: RedisBackend, redis_sync: redis.Redis
) -> None:
    k = msg_key()
    seen = await backend.lookup(k)
    await backend.store(k, b"payload", 60, seen.generations)
    raw = redis_sync.get(backend.value_key(k))
    assert raw is not None
    redis_sync.set(backend.value_key(k), raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    with capture_logs() as logs:
        assert (await backend.lookup(k)).entry is None
    assert [e["reason"] for e in logs if e["event"] == "cache_value_rejected"] == ["corrupt"]
    for _ in range(100):  # the delete runs detached
        if redis_sync.get(backend.value_key(k)) is None:
            break
        await asyncio.sleep(0.01)
    assert redis_sync.get(backend.value_key(k)) is None


async def test_redis_backend_value_of_another_tenant_is_a_miss(
    backend: RedisBackend, redis_sync: redis.Redis
) -> None:
    a, b = msg_key("tenant-a"), msg_key("tenant-b")
    assert backend.value_key(a) != backend.value_key(b)
    await backend.store(a, b"secret-of-a", 60, (await backend.lookup(a)).generations)
    # Simulate a crossed reply or a key collision: A's bytes under B's key.
    redis_sync.set(backend.value_key(b), redis_sync.get(backend.value_key(a)))  # type: ignore[arg-type]
    with capture_logs() as logs:
        assert (await backend.lookup(b)).entry is None
    assert [e["reason"] for e in logs if e["event"] == "cache_value_rejected"] == ["foreign"]


async def test_redis_backend_invalidation_on_one_replica_is_seen_by_another(
    backend: RedisBackend, redis_url: str, redis_prefix: str
) -> None:
    other = backend_for(redis_url, redis_prefix)
    try:
        k = msg_key()
        await backend.store(k, b"v1", 60, (await backend.lookup(k)).generations)
        assert (await other.lookup(k)).entry is not None
        await other.invalidate("thread_1", [message_scope("thread_1", "m1")])
        assert (await backend.lookup(k)).entry is None
    finally:
        await other.close()


async def test_redis_backend_fill_fetched_across_a_write_is_not_stored(
    backend: RedisBackend, redis_sync: redis.Redis
) -> None:
    k = msg_key()
    seen = await backend.lookup(k)
    await backend.invalidate("thread_1", [message_scope("thread_1", "m1")])
    await backend.store(k, b"stale", 60, seen.generations)
    assert redis_sync.get(backend.value_key(k)) is None


async def test_redis_backend_unreachable_fails_open_and_breaker_skips_it(
    redis_proxy: TcpProxy, redis_prefix: str
) -> None:
    b = backend_for(redis_proxy.url, redis_prefix, op_timeout=0.05)
    try:
        k = msg_key()
        assert (await b.lookup(k)).available
        await redis_proxy.close()
        for _ in range(FAILURES_TO_OPEN + 2):
            started = time.monotonic()
            found = await b.lookup(k)
            assert not found.available and found.entry is None
            assert time.monotonic() - started < 0.2
            await asyncio.sleep(0.06)  # let the detached command settle and be counted
        assert not b.available  # the breaker is open: no Redis round trip per call
        started = time.monotonic()
        for _ in range(1000):
            await b.lookup(k)
        assert time.monotonic() - started < 0.5
        await b.store(k, b"x", 60, ())  # silently skipped, no exception
        await b.invalidate("thread_1", [message_scope("thread_1", "m1")])
    finally:
        await b.close()


async def test_redis_backend_slow_redis_answers_within_op_timeout(
    redis_address: tuple[str, int], redis_prefix: str
) -> None:
    proxy = TcpProxy(*redis_address, max_delay=0.0)
    await proxy.start()
    b = backend_for(proxy.url, redis_prefix, op_timeout=0.05)
    try:
        await b.lookup(msg_key())  # connect while fast
        proxy._max_delay = 0.5  # every chunk now takes up to 0.5 s
        proxy._rng.seed(1)
        started = time.monotonic()
        found = await b.lookup(msg_key("tenant-a", "m2"))
        elapsed = time.monotonic() - started
        assert elapsed < 0.15
        assert found.entry is None
    finally:
        await b.close()
        await proxy.close()


# -- S4: cancel cross-talk (CVE-2023-28858/9) --------------------------------------------------

N_KEYS = 40
N_OPERATIONS = 1500


def _payload(key: CacheKey) -> bytes:
    return f"value-of:{key.tenant}:{key.text}".encode()


async def test_redis_backend_random_cancels_under_load_never_cross_values(
    redis_address: tuple[str, int], redis_prefix: str
) -> None:
    """Jittery proxy + callers cancelled at random moments during GET and SET: every value that
    comes back carries its own request's (tenant, key) tag and payload; no reply is ever foreign."""
    proxy = TcpProxy(*redis_address, max_delay=0.004, seed=7)
    await proxy.start()
    b = backend_for(proxy.url, redis_prefix, op_timeout=0.05, max_connections=32)
    rng = random.Random(11)
    keys = [msg_key(f"tenant-{i % 4}", f"m{i}") for i in range(N_KEYS)]
    returned = 0
    wrong: list[str] = []

    async def one(k: CacheKey) -> None:
        nonlocal returned
        found = await b.lookup(k)
        if found.entry is not None:
            returned += 1
            if found.entry.payload != _payload(k):
                wrong.append(k.text)
        else:
            await b.store(k, _payload(k), 60, found.generations)

    try:
        with capture_logs() as logs:
            started = time.monotonic()
            for _ in range(N_OPERATIONS // 50):
                if time.monotonic() - started > 30:
                    break
                tasks = [asyncio.create_task(one(rng.choice(keys))) for _ in range(50)]
                await asyncio.sleep(rng.uniform(0, 0.006))
                for task in tasks:
                    if rng.random() < 0.3:
                        task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                b.guard.open_until = 0.0  # keep exercising Redis even if timeouts opened the breaker
        foreign = [e for e in logs if e["event"] == "cache_value_rejected"]
        assert wrong == []
        assert foreign == []
        assert returned > 100, "too few values came back for the test to mean anything"
    finally:
        await b.close()
        await proxy.close()


async def test_redis_py_raw_client_random_cancels_never_return_another_keys_value(
    redis_address: tuple[str, int], redis_prefix: str
) -> None:
    """The pinned redis-py itself (the CVE's own reproduction shape): GETs cancelled at random
    through a jittery proxy; every completed GET returns the value of the key it asked for."""
    proxy = TcpProxy(*redis_address, max_delay=0.003, seed=3)
    await proxy.start()
    client = aioredis.Redis.from_url(proxy.url, max_connections=8)
    rng = random.Random(5)
    names = [f"{redis_prefix}raw:{i}" for i in range(20)]
    mismatches = 0
    completed = 0
    try:
        await client.mset({n: n.encode() for n in names})

        async def get(name: str) -> None:
            nonlocal mismatches, completed
            value = await client.get(name)
            completed += 1
            if value != name.encode():
                mismatches += 1

        for _ in range(40):
            tasks = [asyncio.create_task(get(rng.choice(names))) for _ in range(25)]
            await asyncio.sleep(rng.uniform(0, 0.004))
            for task in tasks:
                if rng.random() < 0.4:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert mismatches == 0
        assert completed > 100
    finally:
        await client.aclose()
        await proxy.close()
